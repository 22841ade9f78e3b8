"""Customers rollup: per day, customers and orders split into first-time and returning."""

from __future__ import annotations

import datetime as dt

import polars as pl

from shoppulse.metrics import CUSTOMER_COUNTS, ORDER_PLACED, RETURNING_CUSTOMERS


def customers_daily(events: pl.DataFrame, day: dt.date) -> pl.DataFrame:
    """The `customers_daily` row of `day` (zeros when it has events but no orders; none without events)."""
    columns = ("customers", "first_time_customers", "returning_customers", *list(CUSTOMER_COUNTS)[2:])
    if events.is_empty():
        return pl.DataFrame(schema={"event_date": pl.Date, **dict.fromkeys(columns, pl.Int64)})
    orders = events.lazy().filter(pl.col("event_type") == ORDER_PLACED)
    return (
        orders.select(**CUSTOMER_COUNTS)
        .with_columns(pl.all().cast(pl.Int64))
        .with_columns(returning_customers=RETURNING_CUSTOMERS, event_date=pl.lit(day))
        .collect()
    )
