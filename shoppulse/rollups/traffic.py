"""Traffic rollup table of the users asset: per UTC hour, sessions, events and payments (`traffic_hourly`),
the hourly series the anomaly detector watches besides sales."""

from __future__ import annotations

import datetime as dt

import polars as pl

from shoppulse.metrics import TRAFFIC_HOURLY_COUNTS, TRAFFIC_HOURLY_MEASURES


def traffic_hourly(events: pl.DataFrame, day: dt.date) -> pl.DataFrame:
    """Rows of `traffic_hourly` for `day`: one per UTC hour with events (TRAFFIC_HOURLY_COUNTS)."""
    return (
        events.lazy()
        .group_by(pl.col("event_ts").dt.truncate("1h").alias("hour_start"))
        .agg(**TRAFFIC_HOURLY_COUNTS)
        .with_columns(pl.col(TRAFFIC_HOURLY_MEASURES).cast(pl.Int64), event_date=pl.lit(day))
        .collect()
    )
