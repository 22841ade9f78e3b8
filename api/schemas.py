"""Response models: the OpenAPI contract of every field (descriptions and examples).

Money is integer minor units of `meta.currency` (cents for USD/EUR/GBP, yen for JPY); divide by
10^`meta.currency_exponent` for major units. Timestamps are ISO 8601: UTC as `Z`, local times with
their offset.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from shoppulse.contract.events import Currency


class Model(BaseModel):
    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True, frozen=True)


class Meta(Model):
    """How fresh and how complete the answer is."""

    as_of: dt.datetime | None = Field(
        description="When the newest serving-table partition this answer read was materialized (UTC); "
        "null when none of them is materialized yet.",
        examples=["2025-03-10T00:05:12Z"],
    )
    watermark: dt.datetime | None = Field(
        description="Data watermark: the newest event time included in the partitions this answer read (UTC).",
        examples=["2025-03-10T00:04:59.871Z"],
    )
    complete: bool = Field(
        description="True when every UTC partition the answer spans is materialized and closed (its end plus "
        "the lateness horizon has passed), so the numbers will not change any more.",
        examples=[True],
    )
    tz: str = Field(description="IANA time zone of dates and buckets in `data`.", examples=["America/New_York"])
    currency: Currency | None = Field(
        default=None, description="Currency of every money field in `data`; null when there is none.", examples=["USD"]
    )
    currency_exponent: int | None = Field(
        default=None,
        description="Minor-unit exponent of `currency`: money fields divided by 10^exponent are major units.",
        examples=[2],
    )


class Error(Model):
    """An error other than parameter validation."""

    detail: str = Field(description="What went wrong.", examples=["unknown API key"])


# ---------------------------------------------------------------------------------------------- sales


class SalesValues(Model):
    """Sales measures (docs/metrics.md). Order-level ones are null under a category filter."""

    orders: int = Field(description="Orders placed.", examples=[42])
    units: int = Field(description="Units ordered.", examples=[97])
    gross_sales: int = Field(description="Σ unit price × quantity, minor units.", examples=[512300])
    discounts: int = Field(description="Order discounts, minor units.", examples=[20150])
    returns: int = Field(description="Refunded and cancelled merchandise, minor units.", examples=[15000])
    net_sales: int = Field(description="gross_sales − discounts − returns, minor units.", examples=[477150])
    shipping: int | None = Field(
        description="Shipping charged minus refunded, minor units; null under a category filter.", examples=[38900]
    )
    taxes: int | None = Field(
        description="Taxes charged minus refunded, minor units; null under a category filter.", examples=[41210]
    )
    total_sales: int | None = Field(
        description="net_sales + shipping + taxes, minor units; null under a category filter.", examples=[557260]
    )
    aov: int | None = Field(
        description="Average order value (gross_sales − discounts) / orders, minor units; null without orders.",
        examples=[11718],
    )


class BucketFields(Model):
    bucket: str = Field(
        description="Bucket label: local start time for hours; the local date for days; the Monday of the ISO "
        "week for weeks; the 1st of the month for months (edge buckets are clipped to the window).",
        examples=["2025-03-09"],
    )
    start: dt.datetime = Field(
        description="First instant of the bucket, local time.", examples=["2025-03-09T00:00:00-05:00"]
    )
    end: dt.datetime = Field(
        description="End (exclusive) of the bucket, local time.", examples=["2025-03-10T00:00:00-04:00"]
    )


class SalesPoint(SalesValues, BucketFields):
    """One bucket of a sales time series."""


class SalesChange(Model):
    """Relative change of each total against the previous period: (current − previous) / previous."""

    orders: float | None = Field(description="Change of orders; null when the previous value is 0.", examples=[0.12])
    units: float | None = Field(description="Change of units.", examples=[0.08])
    gross_sales: float | None = Field(description="Change of gross sales.", examples=[0.1])
    discounts: float | None = Field(description="Change of discounts.", examples=[-0.05])
    returns: float | None = Field(description="Change of returns.", examples=[0.3])
    net_sales: float | None = Field(description="Change of net sales.", examples=[0.09])
    shipping: float | None = Field(description="Change of shipping.", examples=[0.02])
    taxes: float | None = Field(description="Change of taxes.", examples=[0.09])
    total_sales: float | None = Field(description="Change of total sales.", examples=[0.085])
    aov: float | None = Field(description="Change of average order value.", examples=[-0.01])


class PreviousPeriod(Model):
    from_: dt.date = Field(
        alias="from", description="First local date of the previous period.", examples=["2025-02-24"]
    )
    to: dt.date = Field(description="Last local date of the previous period.", examples=["2025-03-02"])
    series: list[SalesPoint] = Field(description="Buckets of the previous period, same granularity.")
    totals: SalesValues = Field(description="Totals of the previous period.")


class SalesTimeseries(Model):
    granularity: Literal["hour", "day", "week", "month"] = Field(description="Bucket size.", examples=["day"])
    from_: dt.date = Field(alias="from", description="First local date (inclusive).", examples=["2025-03-03"])
    to: dt.date = Field(description="Last local date (inclusive).", examples=["2025-03-09"])
    series: list[SalesPoint] = Field(description="Every bucket of the window in order, zeros when empty.")
    totals: SalesValues = Field(description="Totals over the window (each value rounded once).")
    previous: PreviousPeriod | None = Field(description="The previous period, with `compare=previous_period`.")
    change: SalesChange | None = Field(description="Change of the totals vs. the previous period, with `compare`.")


class DayFields(Model):
    date: dt.date = Field(description="Local date.", examples=["2025-03-09"])
    start: dt.datetime = Field(description="Local midnight starting the day.", examples=["2025-03-09T00:00:00-05:00"])
    end: dt.datetime = Field(description="Local midnight ending the day.", examples=["2025-03-10T00:00:00-04:00"])


class SalesDay(SalesValues, DayFields):
    """Sales of one local day."""


class SalesDaily(Model):
    from_: dt.date = Field(alias="from", description="First local date (inclusive).", examples=["2025-03-09"])
    to: dt.date = Field(description="Last local date (inclusive).", examples=["2025-03-09"])
    days: list[SalesDay] = Field(description="One entry per local day, zeros when empty.")
    totals: SalesValues = Field(description="Totals over the days.")


class ValueField(Model):
    value: str = Field(description="Value of the dimension.", examples=["US"])


class BreakdownItem(SalesValues, ValueField):
    """Sales of one value of the dimension."""


class SalesBreakdown(Model):
    dimension: Literal["country", "channel", "device", "category", "currency"] = Field(
        description="Dimension grouped by (`currency` = the native currency of the sale).", examples=["country"]
    )
    from_: dt.date = Field(alias="from", description="First local date (inclusive).", examples=["2025-03-03"])
    to: dt.date = Field(description="Last local date (inclusive).", examples=["2025-03-09"])
    items: list[BreakdownItem] = Field(description="One entry per value with sales, by net sales descending.")
    totals: SalesValues = Field(description="Totals over all values.")


class TopProduct(Model):
    rank: int = Field(description="1-based position in the ranking (offset + index).", examples=[1])
    product_id: str = Field(description="Product identifier.", examples=["p_00042"])
    category: str = Field(description="Product category.", examples=["electronics"])
    orders: int = Field(description="Orders with the product.", examples=[12])
    units: int = Field(description="Units ordered.", examples=[15])
    gross_sales: int = Field(description="Σ unit price × quantity, minor units.", examples=[89850])
    discounts: int = Field(description="Discounts allocated to its lines, minor units.", examples=[4500])
    returns: int = Field(description="Refunded and cancelled value, minor units.", examples=[0])
    net_sales: int = Field(description="gross_sales − discounts − returns, minor units.", examples=[85350])


class TopProducts(Model):
    metric: Literal["net_sales", "gross_sales", "units", "orders"] = Field(
        description="Ranking measure (descending; ties by product_id ascending, bytewise).", examples=["net_sales"]
    )
    from_: dt.date = Field(alias="from", description="First local date (inclusive).", examples=["2025-03-03"])
    to: dt.date = Field(description="Last local date (inclusive).", examples=["2025-03-09"])
    limit: int = Field(description="Page size.", examples=[10])
    offset: int = Field(description="Products skipped.", examples=[0])
    total_products: int = Field(description="Products with sales in the window (all pages).", examples=[180])
    items: list[TopProduct] = Field(description="The page of the ranking.")


# ---------------------------------------------------------------------------------------------- users


class ActiveWindows(Model):
    m1: int = Field(alias="1m", description="Distinct users in the last 1 minute.", examples=[31])
    m5: int = Field(alias="5m", description="Distinct users in the last 5 minutes.", examples=[120])
    m15: int = Field(alias="15m", description="Distinct users in the last 15 minutes.", examples=[301])
    m30: int = Field(alias="30m", description="Distinct users in the last 30 minutes.", examples=[540])
    m60: int = Field(alias="60m", description="Distinct users in the last 60 minutes.", examples=[902])


class ActiveUsers(Model):
    minute_start: dt.datetime | None = Field(
        description="Start of the newest complete minute (UTC) the windows end with; null without data.",
        examples=["2025-03-09T14:31:00Z"],
    )
    window_minutes: int = Field(description="The requested window.", examples=[5])
    active_users: int | None = Field(
        description="Distinct users active in the `window_minutes` minutes ending with `minute_start`.", examples=[120]
    )
    windows: ActiveWindows | None = Field(description="All precomputed sliding windows at that minute.")


class ActiveUsersPoint(Model):
    minute_start: dt.datetime = Field(description="Minute (UTC).", examples=["2025-03-09T14:31:00Z"])
    active_users: int | None = Field(
        description="Distinct users in the window ending with this minute; null when the minute has no row.",
        examples=[120],
    )


class ActiveUsersSeries(Model):
    window_minutes: int = Field(description="Sliding window of each point, minutes.", examples=[5])
    from_: dt.datetime | None = Field(
        alias="from", description="First minute (UTC).", examples=["2025-03-09T13:32:00Z"]
    )
    to: dt.datetime | None = Field(
        description="Last (newest complete) minute (UTC).", examples=["2025-03-09T14:31:00Z"]
    )
    points: list[ActiveUsersPoint] = Field(description="One point per minute, oldest first.")


class UsersDay(Model):
    date: dt.date = Field(description="UTC date.", examples=["2025-03-09"])
    dau: int | None = Field(description="Distinct users that day; null without a row.", examples=[5120])
    wau: int | None = Field(description="Distinct users in the 7 UTC days ending that day.", examples=[21400])
    mau: int | None = Field(description="Distinct users in the 30 UTC days ending that day.", examples=[60210])
    sessions: int | None = Field(description="Distinct sessions with an event that day.", examples=[7300])
    page_views: int | None = Field(description="page_view events.", examples=[41000])
    product_views: int | None = Field(description="product_view events.", examples=[18000])


class UsersDaily(Model):
    from_: dt.date = Field(alias="from", description="First UTC date (inclusive).", examples=["2025-03-03"])
    to: dt.date = Field(description="Last UTC date (inclusive).", examples=["2025-03-09"])
    days: list[UsersDay] = Field(description="One entry per UTC day.")


# ---------------------------------------------------------------------------------------------- funnel


class FunnelStage(Model):
    stage: Literal["sessions", "product_view_sessions", "cart_sessions", "checkout_sessions", "purchase_sessions"] = (
        Field(description="Funnel stage, in order.", examples=["cart_sessions"])
    )
    sessions: int = Field(description="Sessions that reached the stage.", examples=[1200])
    rate_from_start: float | None = Field(description="sessions / sessions of the first stage.", examples=[0.16])
    rate_from_previous: float | None = Field(
        description="sessions / sessions of the previous stage; null for the first stage.", examples=[0.42]
    )


class Funnel(Model):
    from_: dt.date = Field(alias="from", description="First UTC date (inclusive).", examples=["2025-03-03"])
    to: dt.date = Field(description="Last UTC date (inclusive).", examples=["2025-03-09"])
    stages: list[FunnelStage] = Field(description="The five stages, in funnel order.")
    conversion_rate: float | None = Field(
        description="purchase_sessions / sessions; null without sessions.", examples=[0.031]
    )


class AbandonmentDay(Model):
    date: dt.date = Field(description="UTC date.", examples=["2025-03-09"])
    cart_sessions: int = Field(description="Sessions with an add_to_cart.", examples=[800])
    purchase_sessions: int = Field(description="Sessions with an order.", examples=[230])
    abandonment_rate: float | None = Field(
        description="1 − purchase_sessions / cart_sessions; null without cart sessions.", examples=[0.7125]
    )


class AbandonmentTotals(Model):
    cart_sessions: int = Field(description="Σ cart sessions over the days.", examples=[5600])
    purchase_sessions: int = Field(description="Σ purchase sessions over the days.", examples=[1610])
    abandonment_rate: float | None = Field(description="1 − Σ purchases / Σ carts.", examples=[0.7125])


class CartAbandonment(Model):
    from_: dt.date = Field(alias="from", description="First UTC date (inclusive).", examples=["2025-03-03"])
    to: dt.date = Field(description="Last UTC date (inclusive).", examples=["2025-03-09"])
    days: list[AbandonmentDay] = Field(description="One entry per UTC day, zeros when empty.")
    totals: AbandonmentTotals = Field(description="Over the whole window.")


class CustomerValues(Model):
    customers: int = Field(description="Distinct ordering customers (per day; summed over days).", examples=[300])
    first_time_customers: int = Field(description="Customers with a first order.", examples=[180])
    returning_customers: int = Field(description="customers − first_time_customers.", examples=[120])
    orders: int = Field(description="Orders.", examples=[320])
    first_time_orders: int = Field(description="Orders with customer_order_number = 1.", examples=[180])
    returning_orders: int = Field(description="Orders with customer_order_number > 1.", examples=[140])
    returning_customer_rate: float | None = Field(
        description="returning_customers / customers; null without customers.", examples=[0.4]
    )


class CustomerDayField(Model):
    date: dt.date = Field(description="UTC date.", examples=["2025-03-09"])


class CustomersDay(CustomerValues, CustomerDayField):
    """Customers of one UTC day."""


class ReturningCustomers(Model):
    from_: dt.date = Field(alias="from", description="First UTC date (inclusive).", examples=["2025-03-03"])
    to: dt.date = Field(description="Last UTC date (inclusive).", examples=["2025-03-09"])
    days: list[CustomersDay] = Field(description="One entry per UTC day, zeros when empty.")
    totals: CustomerValues = Field(description="Over the window (customer-days: a customer counts once per day).")


# ---------------------------------------------------------------------------------------------- health


class AssetFreshness(Model):
    asset: str = Field(description="Asset name in the materialization ledger.", examples=["sales"])
    latest_partition: dt.date | None = Field(description="Newest materialized UTC partition.", examples=["2025-03-09"])
    last_materialized_at: dt.datetime | None = Field(
        description="Last materialization of any partition.", examples=["2025-03-09T14:32:05Z"]
    )
    watermark: dt.datetime | None = Field(description="Newest event time included.", examples=["2025-03-09T14:31:58Z"])
    partitions: int = Field(description="Materialized partitions.", examples=[30])
    materialization_age_seconds: float | None = Field(
        description="Seconds since `last_materialized_at`.", examples=[12.5]
    )
    watermark_age_seconds: float | None = Field(description="Seconds since `watermark`.", examples=[19.2])


class IngestPartition(Model):
    topic: str = Field(description="Kafka topic.", examples=["shop.events"])
    partition: int = Field(description="Kafka partition.", examples=[0])
    next_offset: int = Field(description="Next offset the lake expects (its committed offset).", examples=[120455])
    high_watermark: int = Field(description="Broker high watermark, read from the broker.", examples=[120470])
    lag: int = Field(description="Messages in Kafka not yet in the lake.", examples=[15])
    updated_at: dt.datetime = Field(description="When it was measured.", examples=["2025-03-09T14:32:00Z"])


class IngestLag(Model):
    source: Literal["broker", "unavailable"] = Field(
        description="`broker`: lag measured against the broker's high watermarks now (independent of the "
        "drain); `unavailable`: the broker did not answer, lag unknown.",
        examples=["broker"],
    )
    total_lag: int | None = Field(description="Σ lag over partitions (messages); null when unknown.", examples=[15])
    measured_at: dt.datetime | None = Field(description="When the lag was measured.", examples=["2025-03-09T14:32:17Z"])
    broker_error: str | None = Field(description="Why the lag is unknown.", examples=[None])
    stalled: bool = Field(
        description="Kafka holds messages the lake does not, and the lake has not moved for longer than "
        "SHOPPULSE_HEALTH_INGEST_STALL_SECONDS.",
        examples=[False],
    )
    stalled_seconds: float | None = Field(
        description="Seconds the lake has not moved while messages waited (0 when keeping up).", examples=[0.0]
    )
    last_progress_at: dt.datetime | None = Field(
        description="When the lake was last seen moving or caught up.", examples=["2025-03-09T14:32:15Z"]
    )
    updated_at: dt.datetime | None = Field(
        description="When the drain last reported its progress.", examples=["2025-03-09T14:32:00Z"]
    )
    age_seconds: float | None = Field(description="Seconds since `updated_at`.", examples=[3.1])
    partitions: list[IngestPartition] = Field(description="Per Kafka partition.")


class RollupHealth(Model):
    stalled: bool = Field(
        description="Lake data has waited longer than SHOPPULSE_HEALTH_ROLLUP_STALL_SECONDS for a materialization.",
        examples=[False],
    )
    backlog_seconds: float = Field(
        description="Seconds since the lake first moved after the newest materialization (0 = following).",
        examples=[4.2],
    )


class PartitionCatchingUp(Model):
    asset: str = Field(description="Rollup asset.", examples=["sales"])
    partition: dt.date = Field(description="UTC partition whose serving rows lag the lake.", examples=["2025-03-08"])
    ledger_version: int | None = Field(
        description="Lake version the ledger records (null: never written).", examples=[1040]
    )
    lake_version: int = Field(description="Lake version the partition should reflect.", examples=[1042])
    attempts: int = Field(description="Reruns the reconciler requested since the lag began.", examples=[1])
    in_flight: bool = Field(description="A rollups run for the partition is queued or running.", examples=[False])
    lagging_since: dt.datetime = Field(
        description="When the reconciler first saw this lag.", examples=["2025-03-09T14:30:00Z"]
    )
    next_attempt_at: dt.datetime | None = Field(
        description="Earliest next rerun (exponential backoff).", examples=["2025-03-09T14:31:00Z"]
    )
    backing_off: bool = Field(
        description="Two or more reruns did not catch it up: the reconciler backs off.", examples=[False]
    )


class FreshnessReport(Model):
    now: dt.datetime = Field(description="Server time of the report (UTC).", examples=["2025-03-09T14:32:17Z"])
    assets: list[AssetFreshness] = Field(description="Every asset of the ledger.")
    ingest: IngestLag = Field(description="Kafka → lake progress.")
    rollups: RollupHealth = Field(description="Lake → rollups progress.")
    ready: bool = Field(description="What `/health/ready` answers (true = 200).", examples=[True])
    reasons: list[str] = Field(description="Why not ready (empty when ready).", examples=[[]])
    drain_watchdog: dict[str, Any] | None = Field(
        description="The drain watchdog's last report (stalls seen, heals done), when `make run` runs one.",
        examples=[None],
    )
    catching_up: list[PartitionCatchingUp] = Field(
        default_factory=list,
        description="Partitions whose serving rows lag the lake, as the rollup reconciler last saw them.",
    )
    notify_listener_connected: bool = Field(
        description="Whether this API process is LISTENing for materializations (cache invalidation).",
        examples=[True],
    )


class Readiness(Model):
    status: Literal["ready", "degraded"] = Field(description="`ready` (200) or `degraded` (503).", examples=["ready"])
    reasons: list[str] = Field(description="Why degraded (empty when ready).", examples=[[]])


class Health(Model):
    status: Literal["ok"] = Field(description="Always `ok` while the process serves requests.", examples=["ok"])


# ---------------------------------------------------------------------------------------------- envelopes


DATA_DESCRIPTION = "The answer."
META_DESCRIPTION = "Freshness metadata of `data`."


class SalesTimeseriesResponse(Model):
    data: SalesTimeseries = Field(description=DATA_DESCRIPTION)
    meta: Meta = Field(description=META_DESCRIPTION)


class SalesDailyResponse(Model):
    data: SalesDaily = Field(description=DATA_DESCRIPTION)
    meta: Meta = Field(description=META_DESCRIPTION)


class SalesBreakdownResponse(Model):
    data: SalesBreakdown = Field(description=DATA_DESCRIPTION)
    meta: Meta = Field(description=META_DESCRIPTION)


class TopProductsResponse(Model):
    data: TopProducts = Field(description=DATA_DESCRIPTION)
    meta: Meta = Field(description=META_DESCRIPTION)


class ActiveUsersResponse(Model):
    data: ActiveUsers = Field(description=DATA_DESCRIPTION)
    meta: Meta = Field(description=META_DESCRIPTION)


class ActiveUsersSeriesResponse(Model):
    data: ActiveUsersSeries = Field(description=DATA_DESCRIPTION)
    meta: Meta = Field(description=META_DESCRIPTION)


class UsersDailyResponse(Model):
    data: UsersDaily = Field(description=DATA_DESCRIPTION)
    meta: Meta = Field(description=META_DESCRIPTION)


class FunnelResponse(Model):
    data: Funnel = Field(description=DATA_DESCRIPTION)
    meta: Meta = Field(description=META_DESCRIPTION)


class CartAbandonmentResponse(Model):
    data: CartAbandonment = Field(description=DATA_DESCRIPTION)
    meta: Meta = Field(description=META_DESCRIPTION)


class ReturningCustomersResponse(Model):
    data: ReturningCustomers = Field(description=DATA_DESCRIPTION)
    meta: Meta = Field(description=META_DESCRIPTION)


class FreshnessResponse(Model):
    data: FreshnessReport = Field(description=DATA_DESCRIPTION)
    meta: Meta = Field(description=META_DESCRIPTION)


# ---------------------------------------------------------------------------------------------- alerts


AlertRule = Literal["net_sales", "orders", "sessions", "payment_failure_share", "quarantine_share", "pipeline_stalled"]


class AlertItem(Model):
    """One anomaly of one complete UTC hour (docs/alerts.md)."""

    id: str = Field(
        description="Stable per (rule, hour, direction): `rule:YYYY-MM-DDTHHZ:direction`.",
        examples=["orders:2025-03-09T14Z:drop"],
    )
    rule: Literal[
        "net_sales", "orders", "sessions", "payment_failure_share", "quarantine_share", "pipeline_stalled"
    ] = Field(description="What was checked.", examples=["orders"])
    direction: Literal["drop", "spike"] = Field(description="Below or above the baseline.", examples=["drop"])
    hour_start: dt.datetime = Field(
        description="Start of the UTC hour the alert is about (for `pipeline_stalled`: the hour of the stale "
        "watermark).",
        examples=["2025-03-09T14:00:00Z"],
    )
    observed: float = Field(
        description="The hour's value: net sales in minor units of the reporting currency, a count, a share "
        "(0–1), or the watermark's age in seconds.",
        examples=[3],
    )
    baseline: float = Field(
        description="What was expected: the median of the same hour-of-week of previous weeks, the pooled share "
        "of the previous hours, or the stall threshold in seconds.",
        examples=[41],
    )
    score: float | None = Field(
        description="Robust z-score, or the z-score equivalent of the count or share test's p-value (signed: "
        "negative for drops); null for `pipeline_stalled`.",
        examples=[-9.3],
    )
    severity: Literal["warning", "critical"] = Field(
        description="`critical` when |score| ≥ the critical z (or, for a stall, when it lasts 4× the threshold).",
        examples=["critical"],
    )
    message: str = Field(
        description="One sentence for people.",
        examples=[
            "Orders drop at 2025-03-09 14:00 UTC: 3 against a usual 41 (-93%) for this hour of the week "
            "over the last 6 weeks."
        ],
    )
    detected_at: dt.datetime = Field(
        description="When the detector recorded it (UTC).", examples=["2025-03-09T15:10:02Z"]
    )


class Alerts(Model):
    alerts: list[AlertItem] = Field(description="Alerts of the window, newest hour first.")


class AlertsResponse(Model):
    data: Alerts = Field(description=DATA_DESCRIPTION)
    meta: Meta = Field(description=META_DESCRIPTION)
