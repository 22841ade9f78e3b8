"""Sales rollup: order-level measures per 15 minutes (with country/channel/device), hour and day, per
native currency, plus hourly and daily totals converted into the reporting currency."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from decimal import Decimal

import polars as pl

from shoppulse.metrics import (
    MONEY_MEASURES,
    SALES_CONTRIBUTIONS,
    SALES_EVENT_TYPES,
    SALES_MEASURES,
    convert_sum,
    with_derived_sales,
)

BUCKET = "15m"


def _sum_measures(measures: tuple[str, ...]) -> list[pl.Expr]:
    return [pl.col(name).sum().cast(pl.Int64) for name in measures]


def sales_tables(events: pl.DataFrame, day: dt.date) -> dict[str, pl.DataFrame]:
    """sales_15m, sales_hourly and sales_daily rows of `day` from its deduplicated events."""
    contributions = (
        events.lazy()
        .filter(pl.col("event_type").is_in(SALES_EVENT_TYPES))
        .select(
            pl.col("event_ts").dt.truncate(BUCKET).alias("bucket_start"),
            "currency",
            "country",
            "channel",
            "device",
            **SALES_CONTRIBUTIONS,
        )
    )
    dims = ["bucket_start", "currency", "country", "channel", "device"]
    summed = contributions.group_by(dims).agg(_sum_measures(tuple(SALES_CONTRIBUTIONS)))
    quarter_hours = with_derived_sales(summed).with_columns(event_date=pl.lit(day)).collect()
    hourly = (
        quarter_hours.lazy()
        .group_by(pl.col("bucket_start").dt.truncate("1h").alias("hour_start"), "currency")
        .agg(_sum_measures(SALES_MEASURES))
        .with_columns(event_date=pl.lit(day))
        .collect()
    )
    daily = (
        hourly.lazy()
        .group_by("currency")
        .agg(_sum_measures(SALES_MEASURES))
        .with_columns(event_date=pl.lit(day))
        .collect()
    )
    return {"sales_15m": quarter_hours, "sales_hourly": hourly, "sales_daily": daily}


def in_reporting_currency(
    native: pl.DataFrame, keys: tuple[str, ...], target: str, per_usd: Mapping[str, Decimal]
) -> pl.DataFrame:
    """Native-currency sales rows (per `keys` + currency) as one row per `keys` in `target`.

    Money is converted per docs/metrics.md (exact sum of amount × factor, one half-even rounding per
    value); counts are summed.
    """
    rows = []
    for key, group in native.group_by(list(keys), maintain_order=True):
        converted: dict[str, object] = dict(zip(keys, key, strict=True))
        converted["currency"] = target
        for measure in SALES_MEASURES:
            by_currency = dict(zip(group["currency"].to_list(), group[measure].to_list(), strict=True))
            if measure in MONEY_MEASURES:
                converted[measure] = convert_sum(by_currency, target, per_usd)
            else:
                converted[measure] = sum(by_currency.values())
        rows.append(converted)
    schema = {**{k: native.schema[k] for k in keys}, "currency": pl.String, **dict.fromkeys(SALES_MEASURES, pl.Int64)}
    return pl.DataFrame(rows, schema=schema)
