"""What changed in the lake since a given commit: the input of the drain sensor's reports."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path

from shoppulse.lake import commit as log
from shoppulse.lake.layout import LakeTable, partition_dates, read_manifest


@dataclass
class LakeChanges:
    """Rows added per table and partition date by the append commits in (after_seq, seq]."""

    after_seq: int
    seq: int
    rows: dict[LakeTable, dict[dt.date, int]] = field(default_factory=dict)
    quarantined_by_code: dict[str, int] = field(default_factory=dict)
    messages: int = 0
    complete: bool = True  # False when some records were pruned and manifests were scanned instead

    def dates(self, table: LakeTable) -> list[dt.date]:
        return sorted(self.rows.get(table, {}))


def changes_since(lake_dir: Path, after_seq: int) -> LakeChanges:
    """Summarize append commits after `after_seq` up to the newest applied one.

    Compactions move rows without changing them, so they are not changes. When the log no longer
    holds every record since `after_seq` (pruned), every partition whose manifest version is newer
    is reported instead, with its total rows.
    """
    lake_dir = Path(lake_dir)
    last = log.read_applied(lake_dir)
    changes = LakeChanges(after_seq=after_seq, seq=last)
    if last <= after_seq:
        return changes
    records = list(log.commits_since(lake_dir, after_seq, last))
    if len(records) != last - after_seq:
        changes.complete = False
        for table in LakeTable:
            for date in partition_dates(lake_dir, table):
                manifest = read_manifest(lake_dir, table, date)
                if int(manifest["version"]) > after_seq:
                    total = sum(int(info["rows"]) for info in manifest["files"].values())
                    changes.rows.setdefault(table, {})[date] = total
        return changes
    for record in records:
        if record.kind != "append":
            continue
        changes.messages += int(record.counts.get("messages", 0))
        for key, value in record.counts.items():
            if key.startswith("quarantined."):
                code = key.split(".", 1)[1]
                changes.quarantined_by_code[code] = changes.quarantined_by_code.get(code, 0) + int(value)
        for ref in record.adds:
            per_date = changes.rows.setdefault(ref.table, {})
            per_date[ref.date] = per_date.get(ref.date, 0) + ref.rows
    return changes
