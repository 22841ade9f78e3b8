"""The anomaly rules, as pure functions of numbers (no database): docs/alerts.md states them in words.

- **Levels** (net sales, orders, sessions of one complete hour) against the same hour-of-week of the
  previous weeks: median and MAD; robust z = (x − median) / (1.4826·MAD) with |z| > threshold, plus a
  minimum absolute and relative change. Counts never get a scale below √(φ·median) (overdispersed
  Poisson noise: a few weeks' MAD alone can be tiny by chance). A sparse count (median below
  `alert_count_test_below`) or one with MAD 0 gets an exact count test instead (Poisson, or negative
  binomial with variance φ·mean when φ > 1), and net sales are then not scored (the orders' count test
  speaks for a sparse shop). A count the robust z lets pass is still an anomaly when the count test
  puts it beyond the most extreme baseline week (an outage under a baseline widened by promotions).
  Net sales get a compound-Poisson noise floor, and their spikes must come with clearly more orders
  than usual (orders z ≥ 2).
- **Shares** (payment failures / payment attempts, quarantined / received messages) against the pooled
  share of the previous hours: one-sided exact binomial test, plus a minimum rise. Only rises alert.
- **Stalled pipeline**: the ledger watermark is older than `alert_stall_minutes`.

Every rule returns at most one `Alert`; its `id` is stable per (rule, hour, direction).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from shoppulse.alerts.stats import (
    MAD_TO_SIGMA,
    binomial_sf,
    count_cdf,
    count_sf,
    median_and_mad,
    robust_z,
    z_of_tail,
)
from shoppulse.settings import Settings

Direction = Literal["drop", "spike"]
Severity = Literal["warning", "critical"]

NET_SALES, ORDERS, SESSIONS = "net_sales", "orders", "sessions"
PAYMENT_FAILURE_SHARE, QUARANTINE_SHARE, PIPELINE_STALLED = (
    "payment_failure_share",
    "quarantine_share",
    "pipeline_stalled",
)
LEVEL_RULES = (NET_SALES, ORDERS, SESSIONS)
SHARE_RULES = (PAYMENT_FAILURE_SHARE, QUARANTINE_SHARE)
RULES = (*LEVEL_RULES, *SHARE_RULES, PIPELINE_STALLED)

LABELS = {
    NET_SALES: "Net sales",
    ORDERS: "Orders",
    SESSIONS: "Sessions",
    PAYMENT_FAILURE_SHARE: "Payment-failure share",
    QUARANTINE_SHARE: "Quarantine share",
    PIPELINE_STALLED: "Pipeline",
}
POISSON_FLOOR = 0.5
"""Poisson mean used when the baseline median is 0 (so one event is not infinitely surprising)."""
ORDERS_CORROBORATION_Z = 2.0
"""A net-sales spike counts only when the hour's orders are up by at least this many noise units too."""


def alert_id(rule: str, hour_start: dt.datetime, direction: str) -> str:
    """`rule:YYYY-MM-DDTHHZ:direction`: the same alert always gets the same id."""
    return f"{rule}:{hour_start.astimezone(dt.UTC):%Y-%m-%dT%H}Z:{direction}"


@dataclass(frozen=True)
class Alert:
    """One anomaly of one complete hour (or, for a stalled pipeline, of the hour of the stale watermark)."""

    rule: str
    direction: Direction
    hour_start: dt.datetime
    observed: float
    baseline: float
    score: float | None
    severity: Severity
    message: str
    details: Mapping[str, Any] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return alert_id(self.rule, self.hour_start, self.direction)


def _severity(score: float | None, settings: Settings) -> Severity:
    return "critical" if score is not None and abs(score) >= settings.alert_critical_z else "warning"


def _hour_label(hour_start: dt.datetime) -> str:
    return f"{hour_start.astimezone(dt.UTC):%Y-%m-%d %H:00} UTC"


def _number(value: float, money: bool) -> str:
    if money:
        return f"{value / 100:,.2f}"
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.1f}"


def count_z(observed: float | None, history: Sequence[float], settings: Settings) -> float | None:
    """How far a count is above its baseline in units of its noise (the robust scale with the √(φ·median)
    floor); None without observation or baseline."""
    if observed is None or not history:
        return None
    median, mad = median_and_mad(history)
    scale = max(MAD_TO_SIGMA * mad, math.sqrt(settings.alert_count_dispersion * max(median, POISSON_FLOOR)))
    return (observed - median) / scale


def min_change(rule: str, settings: Settings) -> float:
    return {
        NET_SALES: settings.alert_min_change_net_sales,
        ORDERS: settings.alert_min_change_orders,
        SESSIONS: settings.alert_min_change_sessions,
    }[rule]


def _count_test(observed: float, mean: float, direction: Direction, settings: Settings) -> float:
    """One-sided p-value of a count this far below (drop) or above (spike) `mean` (φ = count dispersion)."""
    lam, k, dispersion = max(mean, POISSON_FLOOR), round(observed), settings.alert_count_dispersion
    return count_cdf(k, lam, dispersion) if direction == "drop" else count_sf(k, lam, dispersion)


def _count_score(
    observed: float, median: float, mad: float, history: Sequence[float], direction: Direction, settings: Settings
) -> tuple[float | None, dict[str, Any]]:
    """The score of a count (None = no anomaly) and how it was found.

    Sparse (median below `alert_count_test_below`) or MAD 0: the exact count test against the median.
    Otherwise the robust z with the √(φ·median) floor; failing that, the exact count test against the
    most extreme baseline week in the alert's direction (the quietest week for a drop), so a baseline
    widened by a promotion week still lets an outage through while never flagging ordinary noise.
    """
    if median < settings.alert_count_test_below or mad == 0:
        p_value = _count_test(observed, median, direction, settings)
        if p_value >= settings.alert_p_value:
            return None, {}
        return math.copysign(z_of_tail(p_value), observed - median), {"method": "count_test", "p_value": p_value}
    scale = max(MAD_TO_SIGMA * mad, math.sqrt(settings.alert_count_dispersion * median))
    z = (observed - median) / scale
    if abs(z) > settings.alert_z_threshold:
        return z, {"method": "robust_z", "scale": scale}
    extreme = min(history) if direction == "drop" else max(history)
    p_value = _count_test(observed, extreme, direction, settings)
    if p_value >= settings.alert_p_value:
        return None, {}
    score = math.copysign(max(z_of_tail(p_value), abs(z)), observed - median)
    return score, {"method": "count_test_vs_extreme_week", "extreme": extreme, "p_value": p_value}


def _money_score(
    observed: float,
    median: float,
    mad: float,
    direction: Direction,
    settings: Settings,
    orders_median: float | None,
    orders_z: float | None,
) -> tuple[float | None, dict[str, Any]]:
    """The robust z of hourly net sales (None = no anomaly or not scored); see `level_alert`."""
    if orders_median is None or orders_median < settings.alert_count_test_below or mad == 0:
        return None, {}
    if direction == "spike" and (orders_z is None or orders_z < ORDERS_CORROBORATION_Z):
        return None, {}  # more money without clearly more orders: a large basket, not an anomaly
    cv, dispersion = settings.alert_order_value_cv, settings.alert_count_dispersion
    scale = max(MAD_TO_SIGMA * mad, abs(median) * math.sqrt(dispersion * (1 + cv**2) / orders_median))
    z = robust_z(observed, median, scale)
    if z is None or abs(z) <= settings.alert_z_threshold:
        return None, {}
    return z, {"method": "robust_z", "scale": scale}


def level_alert(
    rule: str,
    hour_start: dt.datetime,
    observed: float,
    history: Sequence[float],
    settings: Settings,
    orders_median: float | None = None,
    orders_z: float | None = None,
) -> Alert | None:
    """An alert when `observed` departs from `history` (the same hour-of-week of previous weeks) by at
    least the rule's minimum absolute change and `alert_min_relative_change` of the median, and:

    - counts (orders, sessions): see `_count_score`;
    - net sales: robust z with a noise floor, since hourly net sales of n orders (a compound Poisson
      sum) vary at least by median × √(φ(1 + CV²) / n), CV = `alert_order_value_cv`, φ =
      `alert_count_dispersion`, n = `orders_median`; not scored for a sparse shop (the orders' count
      test speaks for it). A spike also needs the hour's orders up by `orders_z` ≥
      ORDERS_CORROBORATION_Z: order values are right-skewed, so one large basket is not an anomaly.
    """
    if len(history) < settings.alert_min_baseline_weeks:
        return None
    median, mad = median_and_mad(history)
    change = observed - median
    direction: Direction = "drop" if change < 0 else "spike"
    if abs(change) < min_change(rule, settings) or abs(change) < settings.alert_min_relative_change * median:
        return None
    if rule == NET_SALES:
        score, method = _money_score(observed, median, mad, direction, settings, orders_median, orders_z)
    else:
        score, method = _count_score(observed, median, mad, history, direction, settings)
    if score is None:
        return None
    details = {"baseline_weeks": len(history), "mad": mad, "history": list(history), **method}
    money = rule == NET_SALES
    relative = f" ({change / median:+.0%})" if median else ""
    message = (
        f"{LABELS[rule]} {direction} at {_hour_label(hour_start)}: {_number(observed, money)} against a usual "
        f"{_number(median, money)}{relative} for this hour of the week over the last {len(history)} weeks."
    )
    return Alert(rule, direction, hour_start, observed, median, score, _severity(score, settings), message, details)


def share_alert(
    rule: str,
    hour_start: dt.datetime,
    numerator: int,
    denominator: int,
    baseline_numerator: int,
    baseline_denominator: int,
    settings: Settings,
) -> Alert | None:
    """An alert when the hour's share numerator/denominator rises above the pooled baseline share."""
    if rule == PAYMENT_FAILURE_SHARE:
        enough, rise = denominator >= settings.alert_payment_min_attempts, settings.alert_payment_min_change
    else:
        enough, rise = numerator >= settings.alert_quarantine_min_messages, settings.alert_quarantine_min_change
    if not enough or denominator <= 0 or baseline_denominator <= 0:
        return None
    share = numerator / denominator
    # Smoothed (half a success, one trial), so a clean baseline (0 of n) still gives a usable p.
    base = (baseline_numerator + 0.5) / (baseline_denominator + 1)
    if share - base < rise:
        return None
    p_value = binomial_sf(numerator, denominator, base)
    if p_value >= settings.alert_p_value:
        return None
    score = z_of_tail(p_value)
    message = (
        f"{LABELS[rule]} spike at {_hour_label(hour_start)}: {share:.1%} ({numerator:,} of {denominator:,}) "
        f"against {base:.1%} over the previous {settings.alert_share_baseline_hours} hours."
    )
    details = {
        "method": "binomial",
        "p_value": p_value,
        "numerator": numerator,
        "denominator": denominator,
        "baseline_numerator": baseline_numerator,
        "baseline_denominator": baseline_denominator,
    }
    return Alert(rule, "spike", hour_start, share, base, score, _severity(score, settings), message, details)


def stalled_alert(
    watermark: dt.datetime | None, now: dt.datetime, kafka_lag: int | None, settings: Settings
) -> Alert | None:
    """An alert when the newest event the rollups include is older than the stall threshold.

    Keyed by the hour of the stale watermark, so one stall is one alert however long it lasts.
    """
    if watermark is None:
        return None
    age = (now - watermark).total_seconds()
    threshold = settings.alert_stall_minutes * 60
    if age <= threshold:
        return None
    hour_start = watermark.astimezone(dt.UTC).replace(minute=0, second=0, microsecond=0)
    lag = f"; Kafka lag {kafka_lag:,} messages" if kafka_lag is not None else ""
    message = (
        f"Pipeline stalled: the newest event in the serving tables is from {watermark:%Y-%m-%d %H:%M:%S} UTC, "
        f"{age / 60:,.0f} min ago (threshold {settings.alert_stall_minutes:g} min){lag}."
    )
    severity: Severity = "critical" if age >= 4 * threshold else "warning"
    details = {"watermark": watermark.isoformat(), "age_seconds": age, "kafka_lag": kafka_lag}
    return Alert(PIPELINE_STALLED, "drop", hour_start, age, threshold, None, severity, message, details)


@dataclass(frozen=True)
class HourInputs:
    """Everything the hourly rules need for one complete hour. None = not materialized (not scored)."""

    hour_start: dt.datetime
    levels: Mapping[str, float | None]
    """Observed net_sales, orders, sessions."""
    history: Mapping[str, Sequence[float]]
    """Per level rule: values of the same hour-of-week of previous weeks (materialized weeks only)."""
    payments: tuple[int, int] | None = None
    """(failures, attempts) of the hour."""
    payments_baseline: tuple[int, int] | None = None
    quarantine: tuple[int, int] | None = None
    """(quarantined, quarantined + accepted events) of the hour."""
    quarantine_baseline: tuple[int, int] | None = None


def hour_alerts(inputs: HourInputs, settings: Settings) -> list[Alert]:
    """Every alert of one complete hour."""
    alerts: list[Alert] = []
    history = inputs.history
    orders_history = history.get(ORDERS, ())
    orders_median = median_and_mad(orders_history)[0] if orders_history else None
    for rule in LEVEL_RULES:
        observed = inputs.levels.get(rule)
        if observed is not None:
            found = level_alert(
                rule,
                inputs.hour_start,
                observed,
                history.get(rule, ()),
                settings,
                orders_median=orders_median,
                orders_z=count_z(inputs.levels.get(ORDERS), orders_history, settings),
            )
            if found:
                alerts.append(found)
    for rule, hour, base in (
        (PAYMENT_FAILURE_SHARE, inputs.payments, inputs.payments_baseline),
        (QUARANTINE_SHARE, inputs.quarantine, inputs.quarantine_baseline),
    ):
        if hour is not None and base is not None:
            found = share_alert(rule, inputs.hour_start, *hour, *base, settings)
            if found:
                alerts.append(found)
    return alerts
