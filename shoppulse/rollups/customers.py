"""Customers rollup: per day, customers and orders split into first-time and returning."""

from __future__ import annotations

import datetime as dt

import polars as pl

from shoppulse.metrics import CUSTOMER_COUNTS, CUSTOMER_MEASURES, ORDER_PLACED, RETURNING_CUSTOMERS


def customers_daily(sales: pl.DataFrame, day: dt.date, has_events: bool) -> pl.DataFrame:
    """The `customers_daily` row of `day` from its money-moving events (zeros when the day has events but
    no orders; no row for a day without events)."""
    if not has_events:
        return pl.DataFrame(schema={"event_date": pl.Date, **dict.fromkeys(CUSTOMER_MEASURES, pl.Int64)})
    orders = sales.lazy().filter(pl.col("event_type") == ORDER_PLACED)
    return (
        orders.select(**CUSTOMER_COUNTS)
        .with_columns(pl.all().cast(pl.Int64))
        .with_columns(returning_customers=RETURNING_CUSTOMERS, event_date=pl.lit(day))
        .collect()
    )
