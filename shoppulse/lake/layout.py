"""Where things live in the lake, and how readers get a consistent file set for one day.

    <lake>/
      events/event_date=YYYY-MM-DD/_manifest.json      live files of the partition (+ its version)
      events/event_date=YYYY-MM-DD/<seq>-<n>.parquet   data files (contents never change)
      quarantine/received_date=YYYY-MM-DD/...          rejected messages, by the day the broker got them
      late/received_date=YYYY-MM-DD/...                events beyond the lateness horizon, by day received
      _log/<seq>.json                                  commit records (offsets, files added/removed)
      _staging/                                        files of a commit not yet applied

A partition's manifest is replaced atomically (write, fsync, rename), so a reader that reads the
manifest and then the files it names sees every row of a commit or none of it, even while
compaction swaps files (removed files are deleted only after a grace period).
"""

from __future__ import annotations

import datetime as dt
import json
import os
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

MANIFEST = "_manifest.json"


class LakeTable(StrEnum):
    """The lake's date-partitioned tables."""

    EVENTS = "events"
    QUARANTINE = "quarantine"
    LATE = "late"

    @property
    def partition_key(self) -> str:
        """Hive-style partition column: the event's UTC date, or the UTC date the broker received it."""
        return "event_date" if self is LakeTable.EVENTS else "received_date"


@dataclass(frozen=True)
class PartitionSnapshot:
    """The live files of one partition at `version` (the commit sequence number that last changed it)."""

    table: LakeTable
    date: dt.date
    version: int
    files: tuple[Path, ...] = field(default_factory=tuple)
    rows: int = 0

    @property
    def paths(self) -> list[str]:
        return [str(p) for p in self.files]


def partition_dir(lake_dir: Path, table: LakeTable, date: dt.date) -> Path:
    return Path(lake_dir) / table.value / f"{table.partition_key}={date.isoformat()}"


def read_manifest(lake_dir: Path, table: LakeTable, date: dt.date) -> dict:
    path = partition_dir(lake_dir, table, date) / MANIFEST
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return {"version": 0, "files": {}}


def read_partition(lake_dir: Path, table: LakeTable, date: dt.date) -> PartitionSnapshot:
    """The consistent file set of one partition (empty, version 0, when nothing landed for that day)."""
    manifest = read_manifest(lake_dir, table, date)
    base = partition_dir(lake_dir, table, date)
    names = sorted(manifest["files"])
    return PartitionSnapshot(
        table=table,
        date=date,
        version=int(manifest["version"]),
        files=tuple(base / name for name in names),
        rows=sum(int(manifest["files"][name]["rows"]) for name in names),
    )


def partition_dates(lake_dir: Path, table: LakeTable) -> list[dt.date]:
    """Days that have a manifest, oldest first."""
    root = Path(lake_dir) / table.value
    if not root.exists():
        return []
    days = []
    for entry in root.iterdir():
        if entry.name.startswith(f"{table.partition_key}=") and (entry / MANIFEST).exists():
            days.append(dt.date.fromisoformat(entry.name.split("=", 1)[1]))
    return sorted(days)


def write_manifest(lake_dir: Path, table: LakeTable, date: dt.date, version: int, files: dict[str, dict]) -> None:
    """Atomically replace a partition's manifest (write temp, fsync, rename, fsync dir)."""
    base = partition_dir(lake_dir, table, date)
    base.mkdir(parents=True, exist_ok=True)
    tmp = base / f".{MANIFEST}.{os.getpid()}.tmp"
    payload = json.dumps({"version": version, "files": files}, sort_keys=True, indent=0).encode()
    with open(tmp, "wb") as handle:
        handle.write(payload)
        handle.flush()
        os.fsync(handle.fileno())
    tmp.replace(base / MANIFEST)
    fsync_dir(base)


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
