"""What changed in the lake since a given table version: the input of the drain sensor's reports."""

from __future__ import annotations

import datetime as dt
import threading
from dataclasses import dataclass, field

from shoppulse.lake.layout import LakeTable, partition_dates
from shoppulse.lake.table import (
    LakeLogUnavailableError,
    LakeRef,
    added_files,
    commit_info,
    commits_between,
    lake_uri,
    oldest_log_version,
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


@dataclass
class PartitionChanges:
    """Per kind and partition date, the newest table version whose data-changing commit added rows to it.

    Exact for every commit after `known_after`; a partition last changed before that (its log was
    cleaned up) shows 0. `scanned_until` is the newest version read.
    """

    known_after: int = 0
    scanned_until: int = 0
    versions: dict[LakeTable, dict[dt.date, int]] = field(default_factory=dict)

    def version(self, table: LakeTable, day: dt.date) -> int:
        return self.versions.get(table, {}).get(day, 0)


_SCANS: dict[str, PartitionChanges] = {}
_SCANS_LOCK = threading.Lock()


def partition_change_versions(lake: LakeRef) -> PartitionChanges:
    """The newest data-changing version of every partition, up to at least the table's current version.

    Kept per process and extended by the commits since the last call (each commit's log entry is read
    once), so a long-lived caller (a sensor, the fold) pays only for new commits. Optimize rewrites
    (``dataChange: false``) are not changes.
    """
    uri = lake_uri(lake)
    last = open_table(lake).version()
    with _SCANS_LOCK:
        scan = _SCANS.get(uri)
        if scan is None or last < scan.scanned_until:  # first call, or the table was recreated
            scan = PartitionChanges()
        start = scan.scanned_until
        if start == 0:
            oldest = oldest_log_version(lake)
            if oldest > 1:  # commits before it are only in a checkpoint: their partitions show 0
                scan.known_after = start = oldest - 1
        try:
            for version, actions in commits_between(lake, start, last):
                for added in added_files(version, actions):
                    if added.data_change:
                        day = dt.date.fromisoformat(added.date)
                        scan.versions.setdefault(LakeTable(added.kind), {})[day] = version
                scan.scanned_until = version
        except LakeLogUnavailableError:  # cleaned up under us: start again from what is there
            _SCANS.pop(uri, None)
            raise
        scan.scanned_until = last
        for table in LakeTable:  # partitions older than the log are there too (version 0)
            known = scan.versions.setdefault(table, {})
            for day in partition_dates(lake, table, last):
                known.setdefault(day, 0)
        _SCANS[uri] = scan
        return PartitionChanges(
            scan.known_after, scan.scanned_until, {t: dict(days) for t, days in scan.versions.items()}
        )


def days_changed(lake: LakeRef, table: LakeTable, after_version: int, until_version: int) -> set[dt.date]:
    """Partition dates of `table` that data-changing commits in (after_version, until_version] added rows
    to (optimize rewrites are not changes). Raises LakeLogUnavailableError when part of the range's log
    is gone."""
    days: set[dt.date] = set()
    for version, actions in commits_between(lake, after_version, until_version):
        for added in added_files(version, actions):
            if added.data_change and added.kind == table.value:
                days.add(dt.date.fromisoformat(added.date))
    return days


def rows_added_per_version(
    lake: LakeRef, table: LakeTable, day: dt.date, after_version: int, until_version: int
) -> list[tuple[int, int]]:
    """(version, rows) of each data-changing commit in (after_version, until_version] that added rows to
    the `day` partition of `table`, in version order (optimize rewrites are not additions). Raises
    LakeLogUnavailableError when part of the range's log is gone."""
    wanted = day.isoformat()
    added_rows: list[tuple[int, int]] = []
    for version, actions in commits_between(lake, after_version, until_version):
        rows = sum(
            added.rows
            for added in added_files(version, actions)
            if added.data_change and added.kind == table.value and added.date == wanted
        )
        if rows:
            added_rows.append((version, rows))
    return added_rows
