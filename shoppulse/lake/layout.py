"""Where things live in the lake, and how readers get a consistent file set for one day.

    <lake>/                                              one Delta table (see shoppulse.lake.table)
      _delta_log/<version>.json                          commits: files added/removed, Kafka offsets (txn)
      record_kind=events/partition_date=YYYY-MM-DD/      valid events, by the event's UTC date
      record_kind=late/partition_date=YYYY-MM-DD/        events beyond the lateness horizon, by day received
      record_kind=quarantine/partition_date=YYYY-MM-DD/  rejected messages (original bytes), by day received

A reader pins one table version and lists the partition's files in it: every row of a commit or none
of it, even while optimize swaps files (removed files are deleted by vacuum only after its retention).
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import threading
from dataclasses import dataclass, field
from enum import StrEnum

import pyarrow as pa
from deltalake import DeltaTable

from shoppulse.lake.table import DATE_COLUMN, KIND_COLUMN, LakeRef, lake_uri, open_table


class LakeTable(StrEnum):
    """The kinds of record in the lake (values of its ``record_kind`` partition column)."""

    EVENTS = "events"
    QUARANTINE = "quarantine"
    LATE = "late"

    @property
    def partition_key(self) -> str:
        """What `partition_date` means: the event's UTC date, or the UTC date the broker received it."""
        return "event_date" if self is LakeTable.EVENTS else "received_date"


@dataclass(frozen=True)
class PartitionSnapshot:
    """The files of one (kind, date) partition in table `version` (the pinned Delta version)."""

    table: LakeTable
    date: dt.date
    version: int
    files: tuple[str, ...] = field(default_factory=tuple)
    rows: int = 0
    lake: str = ""
    file_rows: tuple[int, ...] = ()
    """Rows of each file, in `files` order (empty when not known)."""

    @property
    def paths(self) -> list[str]:
        return [str(f) for f in self.files]

    @property
    def content_key(self) -> str:
        """Identifies the partition's contents: data files are immutable and uniquely named, so the
        same file set means the same rows (optimize changes the key, not the rows)."""
        names = "\n".join(sorted(path.rsplit("/", 1)[-1] for path in self.paths))
        return hashlib.sha256(names.encode()).hexdigest()[:24]


_TABLES_LOCK = threading.Lock()


@functools.lru_cache(maxsize=16)
def _pinned(uri: str, version: int) -> tuple[DeltaTable, pa.Table]:
    """A table at a fixed version and its add actions (immutable, so cached per process)."""
    table = open_table(uri, version)
    return table, pa.table(table.get_add_actions(flatten=True))


def pinned_table(lake: LakeRef, version: int | None = None) -> tuple[DeltaTable, pa.Table]:
    """The table at `version` (default: the newest) with its add actions."""
    uri = lake_uri(lake)
    if version is None:
        version = open_table(uri).version()
    with _TABLES_LOCK:
        return _pinned(uri, version)


def read_partition(lake: LakeRef, table: LakeTable, date: dt.date, version: int | None = None) -> PartitionSnapshot:
    """The consistent file set of one partition at table `version` (default: the newest).

    Empty (no files) when nothing landed for that day. Files are in name order (names start with the
    time they were written, so this is roughly arrival order; nothing depends on it).
    """
    delta, actions = pinned_table(lake, version)
    kinds = actions.column(f"partition.{KIND_COLUMN}").to_pylist()
    dates = actions.column(f"partition.{DATE_COLUMN}").to_pylist()
    paths = actions.column("path").to_pylist()
    counts = actions.column("num_records").to_pylist()
    chosen = sorted(
        (path, int(count or 0))
        for kind, day, path, count in zip(kinds, dates, paths, counts, strict=True)
        if kind == table.value and _as_date(day) == date
    )
    base = lake_uri(lake)
    files = tuple(f"{base}/{path}" for path, _ in chosen)
    file_rows = tuple(count for _, count in chosen)
    return PartitionSnapshot(table, date, delta.version(), files, sum(file_rows), base, file_rows)


def _as_date(value: object) -> dt.date:
    return value if isinstance(value, dt.date) else dt.date.fromisoformat(str(value))


def partition_dates(lake: LakeRef, table: LakeTable, version: int | None = None) -> list[dt.date]:
    """Days that hold files of `table` at `version` (default: the newest), oldest first."""
    _, actions = pinned_table(lake, version)
    kinds = actions.column(f"partition.{KIND_COLUMN}").to_pylist()
    dates = actions.column(f"partition.{DATE_COLUMN}").to_pylist()
    return sorted({_as_date(day) for kind, day in zip(kinds, dates, strict=True) if kind == table.value})
