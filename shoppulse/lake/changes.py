"""What changed in the lake since a given table version: the input of the drain sensor's reports."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from shoppulse.lake.layout import LakeTable, partition_dates
from shoppulse.lake.table import (
    LakeLogUnavailableError,
    LakeRef,
    added_files,
    commit_info,
    commits_between,
    open_table,
)


@dataclass
class LakeChanges:
    """Rows added per kind and partition date by the data-changing commits in (after_seq, seq]."""

    after_seq: int
    seq: int
    rows: dict[LakeTable, dict[dt.date, int]] = field(default_factory=dict)
    quarantined_by_code: dict[str, int] = field(default_factory=dict)
    messages: int = 0
    complete: bool = True  # False when the log of the range was cleaned up and every partition is reported

    def dates(self, table: LakeTable) -> list[dt.date]:
        return sorted(self.rows.get(table, {}))


def changes_since(lake: LakeRef, after_seq: int, shard: str | None = None) -> LakeChanges:
    """Summarize the commits after table version `after_seq` up to the newest.

    With `shard` (a drain's `shard_label`), only that shard's drain commits count, and other commits
    (backfill appends) only for shard ``0/N``: each commit is reported by exactly one sharded sensor.

    Optimize rewrites (``dataChange: false``) move rows without changing them, so they are not changes.
    When the log no longer holds every commit of the range, every partition is reported instead.
    """
    last = open_table(lake).version()
    changes = LakeChanges(after_seq=after_seq, seq=last)
    if last <= after_seq:
        return changes
    try:
        commits = list(commits_between(lake, after_seq, last))
    except LakeLogUnavailableError:
        changes.complete = False
        for table in LakeTable:
            for date in partition_dates(lake, table, last):
                changes.rows.setdefault(table, {})[date] = 0
        return changes
    for version, actions in commits:
        info = commit_info(actions).get("shoppulse", {})
        if shard is not None:
            owner = info.get("shard") if isinstance(info, dict) else None
            if (owner or "") != shard and not (not owner and shard.startswith("0/")):
                continue
        counts = info.get("counts", {}) if isinstance(info, dict) else {}
        changes.messages += int(counts.get("messages", 0))
        for key, value in counts.items():
            if key.startswith("quarantined."):
                code = key.split(".", 1)[1]
                changes.quarantined_by_code[code] = changes.quarantined_by_code.get(code, 0) + int(value)
        for added in added_files(version, actions):
            if not added.data_change:
                continue
            per_date = changes.rows.setdefault(LakeTable(added.kind), {})
            day = dt.date.fromisoformat(added.date)
            per_date[day] = per_date.get(day, 0) + added.rows
    return changes
