"""The one definition of every metric ShopPulse serves (docs/metrics.md says the same in words).

Rollups compute additive measures per bucket by summing per-event (or per-line) *contributions*
defined here as Polars expressions over deduplicated lake rows; distinct counts are defined by the
entity they count and the window they count it in; ratios are functions of summed numerators and
denominators (never stored, never averaged). Money is integer minor units of the row's currency.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import ROUND_HALF_EVEN, Context, Decimal

import polars as pl

from shoppulse.contract.events import CURRENCY_EXPONENTS, EventType

# -- Event types that carry money ------------------------------------------------------------------

ORDER_PLACED = EventType.ORDER_PLACED.value
ORDER_CANCELLED = EventType.ORDER_CANCELLED.value
REFUND = EventType.REFUND.value
SALES_EVENT_TYPES = (ORDER_PLACED, ORDER_CANCELLED, REFUND)
"""Events that move sales: a sale on its order_placed, a return on its refund / order_cancelled."""

_type = pl.col("event_type")
_placed = _type == ORDER_PLACED
_cancelled = _type == ORDER_CANCELLED
_refund = _type == REFUND
_zero = pl.lit(0, pl.Int64)


def _items_sum(field: str) -> pl.Expr:
    return pl.col("items").list.eval(pl.element().struct.field(field)).list.sum().fill_null(0)


# -- Sales (order level), docs/metrics.md#sales ----------------------------------------------------

SALES_CONTRIBUTIONS: dict[str, pl.Expr] = {
    "orders": pl.when(_placed).then(1).otherwise(_zero),
    "units": pl.when(_placed).then(_items_sum("quantity")).otherwise(_zero),
    "gross_sales": pl.when(_placed).then(pl.col("subtotal")).otherwise(_zero),
    "discounts": pl.when(_placed).then(pl.col("discount")).otherwise(_zero),
    "returns": pl.when(_refund)
    .then(_items_sum("amount"))
    .when(_cancelled)
    .then(pl.col("subtotal") - pl.col("discount"))
    .otherwise(_zero),
    "shipping": pl.when(_placed)
    .then(pl.col("shipping"))
    .when(_refund | _cancelled)
    .then(-pl.col("shipping"))
    .otherwise(_zero),
    "taxes": pl.when(_placed).then(pl.col("tax")).when(_refund | _cancelled).then(-pl.col("tax")).otherwise(_zero),
}
"""Per sales event (SALES_EVENT_TYPES), its signed contribution to each summed sales measure."""

NET_SALES = pl.col("gross_sales") - pl.col("discounts") - pl.col("returns")
TOTAL_SALES = pl.col("net_sales") + pl.col("shipping") + pl.col("taxes")

SALES_MEASURES = (
    "orders",
    "units",
    "gross_sales",
    "discounts",
    "returns",
    "net_sales",
    "shipping",
    "taxes",
    "total_sales",
)
"""Columns of every sales_* table, in table order."""

MONEY_MEASURES = frozenset({"gross_sales", "discounts", "returns", "net_sales", "shipping", "taxes", "total_sales"})
"""Measures in minor units of a currency (converted with FX); the others are counts."""


def with_derived_sales(frame: pl.LazyFrame | pl.DataFrame) -> pl.LazyFrame:
    """Add net_sales and total_sales to summed contributions (they are sums too, derived once here)."""
    return frame.lazy().with_columns(net_sales=NET_SALES).with_columns(total_sales=TOTAL_SALES)


# -- Products and categories (line level), docs/metrics.md#products-and-categories -----------------

_line_gross = pl.col("unit_price") * pl.col("quantity")

LINE_CONTRIBUTIONS: dict[str, pl.Expr] = {
    "units": pl.when(_placed).then(pl.col("quantity")).otherwise(_zero),
    "gross_sales": pl.when(_placed).then(_line_gross).otherwise(_zero),
    "discounts": pl.when(_placed).then(pl.col("discount")).otherwise(_zero),
    "returns": pl.when(_refund)
    .then(pl.col("amount"))
    .when(_cancelled)
    .then(_line_gross - pl.col("discount"))
    .otherwise(_zero),
}
"""Per order line (one row per `items[]` element of a sales event), its contribution to the item measures."""

LINE_ORDERS = pl.when(_placed).then(1).otherwise(_zero)
"""`orders` of an item: 1 per order_placed event with at least one line of it (lines are first summed
per event and item, so an order with two lines of a product counts once)."""

ITEM_MEASURES = ("orders", "units", "gross_sales", "discounts", "returns", "net_sales")
"""Columns of the product_* and category_* tables, in table order."""


def with_derived_items(frame: pl.LazyFrame | pl.DataFrame) -> pl.LazyFrame:
    return frame.lazy().with_columns(net_sales=NET_SALES)


# -- Users and sessions, docs/metrics.md#users-and-sessions ----------------------------------------

ACTIVE_USER_WINDOWS_MINUTES = (1, 5, 15, 30, 60)
"""users_Nm: distinct user_id with any event in the N whole minutes ending with the minute."""

DAU_DAYS = 1
WAU_DAYS = 7
MAU_DAYS = 30
"""dau / wau / mau: distinct user_id with any event in the 1 / 7 / 30 UTC days ending with the day."""

USER_DAILY_COUNTS: dict[str, pl.Expr] = {
    "sessions": pl.col("session_id").n_unique(),
    "page_views": (_type == EventType.PAGE_VIEW.value).sum(),
    "product_views": (_type == EventType.PRODUCT_VIEW.value).sum(),
}
"""Per UTC day, over all of the day's deduplicated events (a session spanning midnight counts on both days)."""

ACTIVE_USER_COLUMNS = tuple(f"users_{minutes}m" for minutes in ACTIVE_USER_WINDOWS_MINUTES)
"""Columns of `active_users_minute`, one per sliding window."""

USER_DAILY_MEASURES = ("dau", "wau", "mau", *USER_DAILY_COUNTS)
"""Columns of `users_daily`, in table order."""

# -- Funnel and carts, docs/metrics.md#funnel-and-carts --------------------------------------------

FUNNEL_STEPS: dict[str, pl.Expr] = {
    "product_view_sessions": (_type == EventType.PRODUCT_VIEW.value).any(),
    "cart_sessions": (_type == EventType.ADD_TO_CART.value).any(),
    "checkout_sessions": (_type == EventType.CHECKOUT_STARTED.value).any(),
    "purchase_sessions": _placed.any(),
}
"""Per session and day: whether it reached each step (`sessions` counts every session)."""

FUNNEL_DIMENSIONS = ("country", "channel", "device")
"""A session is attributed to the dimensions of its first event of the day (by event_ts, then event_id)."""

FUNNEL_STAGES = ("sessions", *FUNNEL_STEPS)
"""Columns of `funnel_daily`, in funnel order."""

# -- Customers, docs/metrics.md#customers -----------------------------------------------------------

_first_order = pl.col("customer_order_number") == 1

CUSTOMER_COUNTS: dict[str, pl.Expr] = {
    "customers": pl.col("user_id").n_unique(),
    "first_time_customers": pl.col("user_id").filter(_first_order).n_unique(),
    "orders": pl.len().cast(pl.Int64),
    "first_time_orders": _first_order.sum().cast(pl.Int64),
    "returning_orders": (~_first_order).sum().cast(pl.Int64),
}
"""Per UTC day, over the day's order_placed events."""

RETURNING_CUSTOMERS = pl.col("customers") - pl.col("first_time_customers")

CUSTOMER_MEASURES = (
    "customers",
    "first_time_customers",
    "returning_customers",
    "orders",
    "first_time_orders",
    "returning_orders",
)
"""Columns of `customers_daily`, in table order."""

# -- Traffic and payments per hour (anomaly detector inputs), docs/metrics.md#alert-inputs ----------

PAYMENT = EventType.PAYMENT.value
_payment = _type == PAYMENT

TRAFFIC_HOURLY_COUNTS: dict[str, pl.Expr] = {
    "sessions": pl.col("session_id").n_unique(),
    "events": pl.len(),
    "payment_attempts": _payment.sum(),
    "payment_failures": (_payment & (pl.col("payment_status") == "failed")).sum(),
}
"""Per UTC hour of event time, over the hour's deduplicated events: sessions with any event in the hour
(a session spanning an hour boundary counts in both hours, backend `b_` sessions included), accepted
events, payment events and those with payment_status `failed`."""

TRAFFIC_HOURLY_MEASURES = tuple(TRAFFIC_HOURLY_COUNTS)
"""Columns of `traffic_hourly`, in table order."""

# -- Ratios (from summed numerators and denominators) -----------------------------------------------


def _ratio(numerator: int | Decimal, denominator: int | Decimal) -> Decimal | None:
    return None if not denominator else Decimal(numerator) / Decimal(denominator)


def aov(sums: Mapping[str, int | Decimal]) -> Decimal | None:
    """Average order value: (gross_sales − discounts) / orders; None without orders."""
    return _ratio(Decimal(sums["gross_sales"]) - Decimal(sums["discounts"]), sums["orders"])


def conversion_rate(purchase_sessions: int, sessions: int) -> Decimal | None:
    return _ratio(purchase_sessions, sessions)


def cart_abandonment_rate(purchase_sessions: int, cart_sessions: int) -> Decimal | None:
    """1 − purchase_sessions / cart_sessions; None without cart sessions."""
    rate = _ratio(purchase_sessions, cart_sessions)
    return None if rate is None else 1 - rate


def returning_customer_rate(returning_customers: int, customers: int) -> Decimal | None:
    return _ratio(returning_customers, customers)


def payment_failure_share(payment_failures: int, payment_attempts: int) -> Decimal | None:
    """payment_failures / payment_attempts; None without payment attempts."""
    return _ratio(payment_failures, payment_attempts)


def quarantine_share(quarantined: int, accepted_events: int) -> Decimal | None:
    """quarantined / (quarantined + accepted_events): the share of an hour's messages the drain rejected.

    Quarantined messages count by the hour the broker received them, accepted events by their event
    time (they agree but for late events); None for an hour without messages.
    """
    return _ratio(quarantined, quarantined + accepted_events)


# -- Currency conversion, docs/metrics.md#conventions ------------------------------------------------

FACTOR_CONTEXT = Context(prec=34, rounding=ROUND_HALF_EVEN)
EXACT_CONTEXT = Context(prec=80, rounding=ROUND_HALF_EVEN)
SNAP = Decimal("1e-12")


def conversion_factor(source: str, target: str, per_usd: Mapping[str, Decimal]) -> Decimal:
    """Minor units of `target` per minor unit of `source` on one day (`per_usd`: that day's rates).

    factor = per_usd[target] / per_usd[source] × 10^(exponent(target) − exponent(source)), 34 digits.
    """
    if source == target:
        return Decimal(1)
    rate = FACTOR_CONTEXT.divide(_rate(per_usd, target), _rate(per_usd, source))
    scale = Decimal(10) ** (CURRENCY_EXPONENTS[target] - CURRENCY_EXPONENTS[source])
    return FACTOR_CONTEXT.multiply(rate, scale)


def _rate(per_usd: Mapping[str, Decimal], currency: str) -> Decimal:
    if currency == "USD":
        return Decimal(1)
    try:
        return per_usd[currency]
    except KeyError:
        raise KeyError(f"no FX rate for {currency}") from None


def round_minor(value: Decimal | int) -> int:
    """Whole minor units, rounded half-to-even: the single rounding of an output value.

    The exact value is first snapped to 12 decimal places, so a true tie (x.5) computed through a
    34-digit factor stays a tie.
    """
    if isinstance(value, int):
        return value
    snapped = value.quantize(SNAP, context=EXACT_CONTEXT)
    return int(snapped.to_integral_value(rounding=ROUND_HALF_EVEN, context=EXACT_CONTEXT))


def convert_sum(amounts: Mapping[str, int], target: str, per_usd: Mapping[str, Decimal]) -> int:
    """Σ over native currencies of amount × factor, exact, then rounded half-to-even once (minor units)."""
    total = Decimal(0)
    for currency, amount in amounts.items():
        total = EXACT_CONTEXT.add(
            total, EXACT_CONTEXT.multiply(Decimal(amount), conversion_factor(currency, target, per_usd))
        )
    return round_minor(total)
