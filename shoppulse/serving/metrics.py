"""What the API serves, in terms of the one metric definition (`shoppulse.metrics`).

Measures, ratios and rounding are defined once in `shoppulse/metrics.py` (and docs/metrics.md); this
module only adds the serving vocabulary: column orders of the tables the API reads, the windows and
rankings it offers, and ratios as JSON numbers. Ratios are computed from the summed numerators and
denominators of the rows that answer a request, never averaged.
"""

from __future__ import annotations

from decimal import Decimal

from shoppulse import metrics
from shoppulse.metrics import CUSTOMER_MEASURES, FUNNEL_STAGES, ITEM_MEASURES, MONEY_MEASURES, SALES_MEASURES, aov

__all__ = [
    "ACTIVE_USER_WINDOWS",
    "CUSTOMER_MEASURES",
    "FUNNEL_STAGES",
    "ITEM_MEASURES",
    "MONEY_MEASURES",
    "SALES_MEASURES",
    "TOP_PRODUCT_METRICS",
    "aov",
    "cart_abandonment_rate",
    "conversion_rate",
    "ratio",
    "returning_customer_rate",
]

ACTIVE_USER_WINDOWS: dict[int, str] = dict(
    zip(metrics.ACTIVE_USER_WINDOWS_MINUTES, metrics.ACTIVE_USER_COLUMNS, strict=True)
)
"""Sliding window (minutes) -> precomputed column of `active_users_minute`."""

TOP_PRODUCT_METRICS = ("net_sales", "gross_sales", "units", "orders")
"""Measures top products can be ranked by."""


def _number(value: Decimal | None) -> float | None:
    return None if value is None else float(value)


def ratio(numerator: float | Decimal, denominator: float | Decimal) -> float | None:
    """numerator / denominator as a JSON number, or None when the denominator is 0."""
    return None if not denominator else float(Decimal(numerator) / Decimal(denominator))


def conversion_rate(purchase_sessions: int, sessions: int) -> float | None:
    return _number(metrics.conversion_rate(purchase_sessions, sessions))


def cart_abandonment_rate(purchase_sessions: int, cart_sessions: int) -> float | None:
    return _number(metrics.cart_abandonment_rate(purchase_sessions, cart_sessions))


def returning_customer_rate(returning_customers: int, customers: int) -> float | None:
    return _number(metrics.returning_customer_rate(returning_customers, customers))
