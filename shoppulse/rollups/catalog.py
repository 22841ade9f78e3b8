"""Which serving tables each rollup asset owns, with their columns (COPY order) and primary keys.

The names of the assets are the `asset` values of the ledger (`analytics.materializations`) and the
Dagster asset keys. Every table is replaced per partition on its `date_column`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import polars as pl

from shoppulse.metrics import (
    ACTIVE_USER_COLUMNS,
    CUSTOMER_MEASURES,
    FUNNEL_DIMENSIONS,
    FUNNEL_STAGES,
    ITEM_MEASURES,
    SALES_MEASURES,
    TRAFFIC_HOURLY_MEASURES,
    USER_DAILY_MEASURES,
)

SCHEMA = "analytics"

FX_RATES = "fx_rates"
SALES = "sales"
PRODUCTS = "products"
USERS = "users"
FUNNEL = "funnel"
CUSTOMERS = "customers"
INGEST_QUALITY = "ingest_quality"

EVENT_ROLLUPS = (SALES, PRODUCTS, USERS, FUNNEL, CUSTOMERS)
"""Rollups computed from the day's deduplicated events (one lake read serves all of them)."""

ALL_ROLLUPS = (FX_RATES, *EVENT_ROLLUPS, INGEST_QUALITY)


@dataclass(frozen=True)
class ServingTable:
    """A serving table: its columns in COPY order and its primary key (rows are written sorted by it)."""

    name: str
    columns: tuple[str, ...]
    key: tuple[str, ...]
    date_column: str = "event_date"

    @property
    def qualified(self) -> str:
        return f"{SCHEMA}.{self.name}"


def _table(name: str, key: tuple[str, ...], measures: tuple[str, ...], extra: tuple[str, ...] = ()) -> ServingTable:
    return ServingTable(name, (*key, *extra, *measures), key)


TABLES: dict[str, tuple[ServingTable, ...]] = {
    FX_RATES: (ServingTable("fx_rates", ("rate_date", "currency", "per_usd"), ("rate_date", "currency"), "rate_date"),),
    SALES: (
        _table("sales_15m", ("event_date", "bucket_start", "currency", "country", "channel", "device"), SALES_MEASURES),
        _table("sales_hourly", ("event_date", "hour_start", "currency"), SALES_MEASURES),
        _table("sales_daily", ("event_date", "currency"), SALES_MEASURES),
        _table("sales_hourly_reporting", ("event_date", "hour_start", "currency"), SALES_MEASURES),
        _table("sales_daily_reporting", ("event_date", "currency"), SALES_MEASURES),
    ),
    PRODUCTS: (
        _table(
            "category_sales_15m",
            ("event_date", "bucket_start", "currency", "category", "country", "channel", "device"),
            ITEM_MEASURES,
        ),
        _table("category_sales_daily", ("event_date", "category", "currency"), ITEM_MEASURES),
        _table(
            "product_sales_hourly", ("event_date", "hour_start", "product_id", "currency"), ITEM_MEASURES, ("category",)
        ),
        _table("product_sales_daily", ("event_date", "product_id", "currency"), ITEM_MEASURES, ("category",)),
    ),
    USERS: (
        _table(
            "active_users_minute",
            ("event_date", "minute_start"),
            ACTIVE_USER_COLUMNS,
        ),
        _table("users_daily", ("event_date",), USER_DAILY_MEASURES),
        _table("traffic_hourly", ("event_date", "hour_start"), TRAFFIC_HOURLY_MEASURES),
    ),
    FUNNEL: (
        _table(
            "funnel_daily",
            ("event_date", *FUNNEL_DIMENSIONS),
            FUNNEL_STAGES,
        ),
    ),
    CUSTOMERS: (_table("customers_daily", ("event_date",), CUSTOMER_MEASURES),),
    INGEST_QUALITY: (
        _table("quarantine_daily", ("event_date", "reason"), ("events",)),
        _table("late_events_daily", ("event_date", "original_date", "event_type"), ("events",)),
        _table("quarantine_hourly", ("event_date", "hour_start"), ("messages",)),
    ),
}
"""Serving tables of each rollup asset."""

TABLE_BY_NAME: dict[str, ServingTable] = {table.name: table for tables in TABLES.values() for table in tables}


def sum_rows(name: str, parts: Sequence[pl.DataFrame]) -> pl.DataFrame:
    """Rows of table `name` from its rows over disjoint parts of a day's events (or a served row and a
    fold's delta), for tables whose values are sums over events: summed per key, except a product's
    `category` (the smallest)."""
    table = TABLE_BY_NAME[name]
    values = table.columns[len(table.key) :]
    return (
        pl.concat([part.select(table.columns) for part in parts])
        .group_by(list(table.key))
        .agg(*[pl.col(c).min() if c == "category" else pl.col(c).sum().cast(pl.Int64) for c in values])
        .select(table.columns)
    )
