"""Ingest-quality rollup: quarantined messages by reason, and beyond-horizon events by the day they
happened and their type, per UTC day the broker received them.

Quarantined messages are counted as delivered (they have no trusted event_id): one aggregate
straight over the partition's Parquet files. Late events are deduplicated like all events.
"""

from __future__ import annotations

import datetime as dt

import polars as pl

from shoppulse.lake.layout import LakeTable, PartitionSnapshot, read_partition
from shoppulse.lake.table import LakeRef
from shoppulse.rollups.dedup import first_copies
from shoppulse.rollups.source import scan_partition

LATE_COLUMNS = {
    "event_id": pl.String(),
    "event_type": pl.String(),
    "event_date": pl.Date(),
    "kafka_ts": pl.Datetime("ms", "UTC"),
    "kafka_partition": pl.Int32(),
    "kafka_offset": pl.Int64(),
}


def quality_snapshots(
    lake_dir: LakeRef, day: dt.date, version: int | None = None
) -> tuple[PartitionSnapshot, PartitionSnapshot]:
    """The quarantine and late partitions of received date `day` at table `version` (default: newest)."""
    return (
        read_partition(lake_dir, LakeTable.QUARANTINE, day, version),
        read_partition(lake_dir, LakeTable.LATE, day, version),
    )


def quarantine_daily(snapshot: PartitionSnapshot) -> pl.DataFrame:
    """Rows of `quarantine_daily` for the snapshot's received date."""
    schema = {"event_date": pl.Date, "reason": pl.String, "events": pl.Int64}
    if not snapshot.files:
        return pl.DataFrame(schema=schema)
    frame = (
        scan_partition(snapshot, {"reason_code": pl.String()})
        .group_by(pl.col("reason_code").alias("reason"))
        .agg(pl.len().alias("events"))
        .collect()
    )
    return frame.select(pl.lit(snapshot.date).alias("event_date"), "reason", pl.col("events").cast(pl.Int64))


def quarantine_hourly(snapshot: PartitionSnapshot) -> pl.DataFrame:
    """Rows of `quarantine_hourly` for the snapshot's received date: messages per UTC hour received."""
    schema = {"event_date": pl.Date, "hour_start": pl.Datetime("ms", "UTC"), "messages": pl.Int64}
    if not snapshot.files:
        return pl.DataFrame(schema=schema)
    return (
        scan_partition(snapshot, {"kafka_ts": pl.Datetime("ms", "UTC")})
        .group_by(pl.col("kafka_ts").dt.truncate("1h").alias("hour_start"))
        .agg(pl.len().cast(pl.Int64).alias("messages"))
        .select(pl.lit(snapshot.date).alias("event_date"), "hour_start", "messages")
        .collect()
    )


def late_events_daily(snapshot: PartitionSnapshot) -> pl.DataFrame:
    """Rows of `late_events_daily` for the snapshot's received date (each event_id once)."""
    late = first_copies(scan_partition(snapshot, LATE_COLUMNS).collect())
    return (
        late.lazy()
        .group_by(pl.col("event_date").alias("original_date"), "event_type")
        .agg(pl.len().cast(pl.Int64).alias("events"))
        .with_columns(event_date=pl.lit(snapshot.date))
        .collect()
    )


def newest_received(quarantine: PartitionSnapshot, late: PartitionSnapshot) -> dt.datetime | None:
    """Newest broker timestamp among the day's quarantined and late messages (the rollup's watermark)."""
    column = {"kafka_ts": pl.Datetime("ms", "UTC")}
    newest = [scan_partition(s, column).select(pl.col("kafka_ts").max()) for s in (quarantine, late) if s.files]
    if not newest:
        return None
    return pl.concat(pl.collect_all(newest))["kafka_ts"].max()  # type: ignore[return-value]
