"""Products rollup: line-level measures per product (hourly, daily) and per category (15 minutes with
country/channel/device, daily), per native currency."""

from __future__ import annotations

import datetime as dt

import polars as pl

from shoppulse.metrics import LINE_CONTRIBUTIONS, LINE_ORDERS, SALES_EVENT_TYPES, with_derived_items

CONTEXT = ("event_id", "event_type", "event_ts", "currency", "country", "channel", "device")
SUMMED = ("orders", *LINE_CONTRIBUTIONS)


def _sums(names: tuple[str, ...]) -> list[pl.Expr]:
    return [pl.col(name).sum().cast(pl.Int64) for name in names]


def order_lines(events: pl.DataFrame) -> pl.LazyFrame:
    """One row per items[] element of the day's sales events, with its event's context."""
    return (
        events.lazy()
        .filter(pl.col("event_type").is_in(SALES_EVENT_TYPES))
        .select(*CONTEXT, "items")
        .explode("items")
        .filter(pl.col("items").is_not_null())
        .unnest("items")
    )


def _per_event(lines: pl.LazyFrame, item: str) -> pl.LazyFrame:
    """Lines summed per event and `item` (product_id or category): `orders` is 1 per order_placed event."""
    extra = [pl.col("category").min()] if item == "product_id" else []
    return (
        lines.with_columns(**LINE_CONTRIBUTIONS)
        .group_by(*CONTEXT, item)
        .agg(*extra, *_sums(tuple(LINE_CONTRIBUTIONS)))
        .with_columns(orders=LINE_ORDERS)
    )


def products_tables(events: pl.DataFrame, day: dt.date) -> dict[str, pl.DataFrame]:
    """category_sales_15m, category_sales_daily, product_sales_hourly and product_sales_daily of `day`."""
    lines = order_lines(events).collect().lazy()
    per_product = _per_event(lines, "product_id").with_columns(hour_start=pl.col("event_ts").dt.truncate("1h"))
    product_hourly = with_derived_items(
        per_product.group_by("hour_start", "product_id", "currency").agg(pl.col("category").min(), *_sums(SUMMED))
    ).with_columns(event_date=pl.lit(day))
    product_daily = with_derived_items(
        per_product.group_by("product_id", "currency").agg(pl.col("category").min(), *_sums(SUMMED))
    ).with_columns(event_date=pl.lit(day))
    per_category = _per_event(lines, "category").with_columns(bucket_start=pl.col("event_ts").dt.truncate("15m"))
    category_15m = with_derived_items(
        per_category.group_by("bucket_start", "currency", "category", "country", "channel", "device").agg(
            *_sums(SUMMED)
        )
    ).with_columns(event_date=pl.lit(day))
    category_daily = with_derived_items(per_category.group_by("category", "currency").agg(*_sums(SUMMED))).with_columns(
        event_date=pl.lit(day)
    )
    frames = pl.collect_all([product_hourly, product_daily, category_15m, category_daily])
    names = ("product_sales_hourly", "product_sales_daily", "category_sales_15m", "category_sales_daily")
    return dict(zip(names, frames, strict=True))
