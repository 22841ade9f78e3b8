"""Reading the lake for the rollups: consistent per-day snapshots through the partition manifests.

A partition is read only through `read_partition` (its manifest names a consistent file set, even
while compaction swaps files). `applied_seq` is read before any manifest, so every commit up to it
is included in what is read afterwards, and its Kafka offsets are a lower bound of what the rollup saw.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from shoppulse.contract.schema import LAKE_SCHEMA
from shoppulse.lake import commit as log
from shoppulse.lake.decode import QUARANTINE_SCHEMA
from shoppulse.lake.layout import LakeTable, PartitionSnapshot, read_partition
from shoppulse.rollups.dedup import first_copies

EVENT_COLUMNS: dict[str, pl.DataType] = {
    name: LAKE_SCHEMA[name]
    for name in (
        "event_id",
        "event_type",
        "event_ts",
        "user_id",
        "session_id",
        "country",
        "channel",
        "device",
        "currency",
        "items",
        "subtotal",
        "discount",
        "shipping",
        "tax",
        "customer_order_number",
        "kafka_ts",
        "kafka_partition",
        "kafka_offset",
        "event_date",
    )
}
"""Lake columns the event rollups read."""


@dataclass(frozen=True)
class LakeState:
    """The newest fully applied lake commit when a read began, and the Kafka offsets it recorded."""

    applied_seq: int
    offsets: Mapping[str, Mapping[str, int]]

    @staticmethod
    def read(lake_dir: Path) -> LakeState:
        seq = log.read_applied(Path(lake_dir))
        record = log.read_commit(Path(lake_dir), seq) if seq else None
        return LakeState(seq, record.offsets if record else {})


def source_offsets(state: LakeState, snapshots: Iterable[PartitionSnapshot]) -> dict[str, Any]:
    """Ledger `source_offsets`: lake versions of the partitions read, and the lake's Kafka offsets."""
    return {
        "lake_applied_seq": state.applied_seq,
        "partitions": {f"{s.table.value}/{s.date.isoformat()}": s.version for s in snapshots},
        "kafka_next_offsets": {topic: dict(parts) for topic, parts in state.offsets.items()},
    }


def scan_partition(snapshot: PartitionSnapshot, schema: Mapping[str, pl.DataType]) -> pl.LazyFrame:
    """Lazy scan of the `schema` columns of a snapshot's files (a column an older file lacks reads as null)."""
    if not snapshot.files:
        return pl.LazyFrame(schema=dict(schema))
    file_schema = QUARANTINE_SCHEMA if snapshot.table is LakeTable.QUARANTINE else LAKE_SCHEMA
    return pl.scan_parquet(
        snapshot.paths,
        schema=file_schema,
        hive_partitioning=False,
        missing_columns="insert",
        extra_columns="ignore",
    ).select(list(schema))


@dataclass(frozen=True)
class DayEvents:
    """One UTC day's events, each event_id once (see `dedup`), and the snapshot they were read from."""

    day: dt.date
    snapshot: PartitionSnapshot
    events: pl.DataFrame
    copies_dropped: int

    @property
    def max_event_ts(self) -> dt.datetime | None:
        return self.events["event_ts"].max() if self.events.height else None  # type: ignore[return-value]


def load_day(lake_dir: Path, day: dt.date, schema: Mapping[str, pl.DataType] = EVENT_COLUMNS) -> DayEvents:
    """Read and deduplicate the events partition of `day`."""
    snapshot = read_partition(Path(lake_dir), LakeTable.EVENTS, day)
    events = first_copies(scan_partition(snapshot, schema).collect())
    return DayEvents(day, snapshot, events, snapshot.rows - events.height)


def entity_codes(column: str, categories: pl.Categories) -> pl.Expr:
    """Integer codes of a high-cardinality string column (user_id, session_id) for fast grouping.

    Codes come from `categories` (make one with `pl.Categories.random()` per computation and use it for
    every frame whose codes must match); they identify values within that computation only.
    """
    return pl.col(column).cast(pl.Categorical(categories)).to_physical().cast(pl.Int64)
