"""Query parameters shared by the routes: types, bounds, descriptions and examples (OpenAPI)."""

from __future__ import annotations

import datetime as dt
from enum import IntEnum
from typing import Annotated, Literal

from fastapi import Query

from shoppulse.contract.events import Channel, Currency, Device
from shoppulse.serving.timeframe import Granularity


class ActiveWindow(IntEnum):
    """Sliding windows precomputed per minute."""

    ONE = 1
    FIVE = 5
    FIFTEEN = 15
    THIRTY = 30
    SIXTY = 60


LOCAL_DATES = (
    "Local calendar date in `tz`, inclusive; the window is [local midnight of `from`, local midnight after `to`)."
)
UTC_DATES = "UTC calendar date, inclusive (these rollups are distinct counts kept per UTC day)."

From = Annotated[
    dt.date | None,
    Query(
        alias="from",
        description=f"First day of the window. {LOCAL_DATES} Default: 6 days before `to`.",
        examples=["2025-03-03"],
    ),
]
To = Annotated[
    dt.date | None,
    Query(description=f"Last day of the window. {LOCAL_DATES} Default: today in `tz`.", examples=["2025-03-09"]),
]
FromToday = Annotated[
    dt.date | None,
    Query(alias="from", description=f"First day. {LOCAL_DATES} Default: `to`.", examples=["2025-03-09"]),
]
ToToday = Annotated[
    dt.date | None,
    Query(description=f"Last day. {LOCAL_DATES} Default: today in `tz`.", examples=["2025-03-09"]),
]
FromUtc = Annotated[
    dt.date | None,
    Query(alias="from", description=f"First day. {UTC_DATES} Default: 6 days before `to`.", examples=["2025-03-03"]),
]
ToUtc = Annotated[
    dt.date | None,
    Query(description=f"Last day. {UTC_DATES} Default: today (UTC).", examples=["2025-03-09"]),
]
Tz = Annotated[
    str,
    Query(
        min_length=1,
        max_length=64,
        description="IANA time zone the dates and buckets are in, e.g. `America/New_York`, `Asia/Kolkata`. "
        "Days are 23 or 25 hours long across DST changes. Default: UTC.",
        examples=["America/New_York"],
    ),
]
TargetCurrency = Annotated[
    Currency | None,
    Query(
        description="Currency of every money field. Each (UTC day, native currency) sum is converted with that "
        "day's cross rate from `fx_rates` and each output value is rounded half-to-even once. "
        "Default: the reporting currency (USD).",
        examples=["EUR"],
    ),
]
NativeCurrency = Annotated[
    Currency | None,
    Query(description="Only sales made in this (native) currency.", examples=["GBP"]),
]
Category = Annotated[
    str | None,
    Query(
        min_length=1,
        max_length=64,
        pattern=r"^[^\x00-\x1f\x7f]+$",
        description="Only order lines of this product category (money then excludes shipping and taxes).",
        examples=["electronics"],
    ),
]
Country = Annotated[
    str | None,
    Query(pattern=r"^[A-Z]{2}$", description="Only sales from this ISO 3166-1 alpha-2 country.", examples=["US"]),
]
ChannelFilter = Annotated[Channel | None, Query(description="Only sales from this channel.", examples=["email"])]
DeviceFilter = Annotated[Device | None, Query(description="Only sales from this device.", examples=["mobile"])]
GranularityParam = Annotated[
    Granularity,
    Query(
        description="Bucket size: local hours (at most 31 days), days, ISO weeks starting Monday, or months "
        "(at most 366 days).",
        examples=["day"],
    ),
]
Compare = Annotated[
    Literal["previous_period"] | None,
    Query(
        description="`previous_period`: also return the same number of days immediately before `from`, and the "
        "relative change of the totals.",
        examples=["previous_period"],
    ),
]
Dimension = Annotated[
    Literal["country", "channel", "device", "category", "currency"],
    Query(description="Group by this dimension (`currency` = the native currency of the sale).", examples=["country"]),
]
Metric = Annotated[
    Literal["net_sales", "gross_sales", "units", "orders"],
    Query(description="Rank by this measure, descending; ties by product_id ascending.", examples=["units"]),
]
Limit = Annotated[int, Query(ge=1, le=100, description="Page size (1–100).", examples=[10])]
Offset = Annotated[int, Query(ge=0, le=10_000, description="Items to skip (0–10000).", examples=[0])]
Window = Annotated[
    ActiveWindow,
    Query(description="Sliding window in minutes: 1, 5, 15, 30 or 60.", examples=[5]),
]
Minutes = Annotated[
    int, Query(ge=1, le=1440, description="Number of minutes in the series (1–1440), newest last.", examples=[60])
]
FunnelCountry = Annotated[
    str | None, Query(pattern=r"^[A-Z]{2}$", description="Only sessions from this country.", examples=["DE"])
]
FunnelChannel = Annotated[Channel | None, Query(description="Only sessions from this channel.", examples=["social"])]
FunnelDevice = Annotated[Device | None, Query(description="Only sessions on this device.", examples=["desktop"])]
