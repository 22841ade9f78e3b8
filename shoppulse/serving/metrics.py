"""The served measures and ratios: the one place that says which column sums into what.

Definitions are docs/metrics.md. Additive measures are summed in SQL (money after conversion into
the requested currency, see `currency.py`); ratios are computed here from the summed numerators and
denominators of the rows that answer a request, never averaged.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal

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
"""Order-level measures of the `sales_*` tables."""

ITEM_MEASURES = ("orders", "units", "gross_sales", "discounts", "returns", "net_sales")
"""Line-level measures of the `category_*` and `product_*` tables (no shipping, taxes, totals)."""

MONEY_MEASURES = frozenset({"gross_sales", "discounts", "returns", "net_sales", "shipping", "taxes", "total_sales"})
"""Measures in minor units of a currency: converted with FX, rounded half-to-even once."""

FUNNEL_STAGES = (
    "sessions",
    "product_view_sessions",
    "cart_sessions",
    "checkout_sessions",
    "purchase_sessions",
)
"""Columns of `funnel_daily`, in funnel order."""

CUSTOMER_MEASURES = (
    "customers",
    "first_time_customers",
    "returning_customers",
    "orders",
    "first_time_orders",
    "returning_orders",
)

ACTIVE_USER_WINDOWS: dict[int, str] = {
    1: "users_1m",
    5: "users_5m",
    15: "users_15m",
    30: "users_30m",
    60: "users_60m",
}
"""Sliding window (minutes) -> precomputed column of `active_users_minute`."""

TOP_PRODUCT_METRICS = ("net_sales", "gross_sales", "units", "orders")
"""Measures top products can be ranked by."""


def ratio(numerator: float | Decimal, denominator: float | Decimal) -> float | None:
    """numerator / denominator, or None when the denominator is 0."""
    if not denominator:
        return None
    return float(Decimal(numerator) / Decimal(denominator))


def aov(sums: Mapping[str, Decimal | int]) -> Decimal | None:
    """Average order value (gross_sales − discounts) / orders, unrounded; None without orders."""
    orders = sums["orders"]
    if not orders:
        return None
    return (Decimal(sums["gross_sales"]) - Decimal(sums["discounts"])) / Decimal(orders)


def conversion_rate(purchase_sessions: int, sessions: int) -> float | None:
    return ratio(purchase_sessions, sessions)


def cart_abandonment_rate(purchase_sessions: int, cart_sessions: int) -> float | None:
    """1 − purchase_sessions / cart_sessions (None without cart sessions)."""
    if not cart_sessions:
        return None
    return float(1 - Decimal(purchase_sessions) / Decimal(cart_sessions))


def returning_customer_rate(returning_customers: int, customers: int) -> float | None:
    return ratio(returning_customers, customers)
