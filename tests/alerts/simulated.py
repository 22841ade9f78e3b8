"""Hourly series of a simulated shop, straight from the simulator's model (no Kafka, no lake): fast.

The series follow the metric definitions of the serving tables: orders and net sales by the hour of
their event (net sales = merchandise of orders placed − returns of cancellations and refunds, converted
to USD with the synthetic rates of the first day), sessions = distinct sessions with an event in the
hour, payments = payment events and the failed ones.
"""

from __future__ import annotations

import copy
import datetime as dt
from dataclasses import dataclass, field
from decimal import Decimal

import numpy as np
import polars as pl

from shoppulse.alerts.detector import Alert, HourInputs, hour_alerts
from shoppulse.contract.events import CURRENCY_EXPONENTS, EventType
from shoppulse.rollups.fx import synthetic_rates
from shoppulse.settings import Settings
from simulator.catalog import CURRENCIES, build_catalog
from simulator.faults import Incident
from simulator.model import DAY_MS, HOUR_MS, MINUTE_MS, PAYMENT_STATUSES, Behaviour, Shop, WindowEvents

BACKEND_OFFSET = 1 << 40
"""Backend session numbers are kept apart from shopper session numbers."""


@dataclass
class HourlySeries:
    """Per hour (epoch ms of its start): the detector's inputs."""

    sessions: dict[int, int] = field(default_factory=dict)
    events: dict[int, int] = field(default_factory=dict)
    orders: dict[int, int] = field(default_factory=dict)
    net_sales: dict[int, float] = field(default_factory=dict)
    payment_attempts: dict[int, int] = field(default_factory=dict)
    payment_failures: dict[int, int] = field(default_factory=dict)

    def add(self, other: dict[str, dict[int, float]]) -> None:
        for name, values in other.items():
            target = getattr(self, name)
            for hour, value in values.items():
                target[hour] = target.get(hour, 0) + value

    def copy(self) -> HourlySeries:
        return copy.deepcopy(self)


def _per_hour(ts: pl.Series, weights: pl.Series | None = None) -> dict[int, float]:
    frame = pl.DataFrame({"hour": ts // HOUR_MS * HOUR_MS, "w": weights if weights is not None else 1})
    summed = frame.group_by("hour").agg(pl.col("w").sum())
    return dict(zip(summed["hour"].to_list(), summed["w"].to_list(), strict=True))


def _usd(frame: pl.DataFrame, amount: pl.Expr, rates: dict[str, float]) -> pl.Series:
    """Amounts (minor units of each row's currency, a CURRENCIES index) in USD cents."""
    factors = np.array([100 / (rates[c] * 10 ** CURRENCY_EXPONENTS[c]) for c in CURRENCIES])
    values = frame.select(amount.cast(pl.Float64)).to_series().to_numpy()
    return pl.Series(values * factors[frame["currency"].cast(pl.Int64).to_numpy()])


def window_series(events: WindowEvents, rates: dict[str, float]) -> dict[str, dict[int, float]]:
    """The hourly series of one generated window (the sessions starting in it, and their later events)."""
    frames = events.frames
    backend_types = (EventType.ORDER_CANCELLED, EventType.REFUND)
    shopper = [f.select("ts", "session") for t, f in frames.items() if t not in backend_types]
    backend = [frames[t].select("ts", (pl.col("session") + BACKEND_OFFSET).alias("session")) for t in backend_types]
    pairs = pl.concat([*shopper, *backend]).select(hour=pl.col("ts") // HOUR_MS * HOUR_MS, session="session")
    sessions = pairs.unique().group_by("hour").len()
    events_per_hour = pairs.group_by("hour").len()
    placed, payments = frames[EventType.ORDER_PLACED], frames[EventType.PAYMENT]
    cancelled, refunds = frames[EventType.ORDER_CANCELLED], frames[EventType.REFUND]
    refund_merch = pl.col("amount") - pl.col("shipping") - pl.col("tax")
    net: dict[int, float] = {}
    for ts, amount in (
        (placed["ts"], _usd(placed, pl.col("subtotal") - pl.col("discount"), rates)),
        (cancelled["ts"], -_usd(cancelled, pl.col("subtotal") - pl.col("discount"), rates)),
        (refunds["ts"], -_usd(refunds, refund_merch, rates)),
    ):
        for hour, value in _per_hour(ts, amount).items():
            net[hour] = net.get(hour, 0.0) + value
    failed = payments.filter(pl.col("status") == PAYMENT_STATUSES.index("failed"))
    return {
        "sessions": dict(zip(sessions["hour"].to_list(), sessions["len"].to_list(), strict=True)),
        "events": dict(zip(events_per_hour["hour"].to_list(), events_per_hour["len"].to_list(), strict=True)),
        "orders": _per_hour(placed["ts"]),
        "net_sales": net,
        "payment_attempts": _per_hour(payments["ts"]),
        "payment_failures": _per_hour(failed["ts"]),
    }


class SimulatedShop:
    """A simulated shop generated day by day; its hourly series accumulate (later refunds included)."""

    def __init__(self, seed: int, start: dt.datetime, sessions_per_hour: float, behaviour: Behaviour | None = None):
        self.shop = Shop(build_catalog(5000), seed, behaviour or Behaviour(), seasonal=True)
        self.shop.seed_population(int(sessions_per_hour * 12))
        self.sessions_per_ms = sessions_per_hour / HOUR_MS
        self.start_ms = int(start.timestamp() * 1000)
        self.until_ms = self.start_ms
        rates = synthetic_rates(start.date())
        self.rates = {c: float(rates.get(c, Decimal(1))) for c in CURRENCIES}
        self.series = HourlySeries()

    def run_days(self, days: int) -> None:
        for _ in range(days):
            events = self.shop.generate(self.until_ms, self.until_ms + DAY_MS, self.sessions_per_ms)
            self.series.add(window_series(events, self.rates))
            self.until_ms += DAY_MS

    def fork(self, incidents: tuple[Incident, ...] = ()) -> SimulatedShop:
        """An independent copy continuing from here, with `incidents` injected into its traffic."""
        twin = copy.deepcopy(self)
        twin.shop.calendar.incidents = incidents
        return twin

    def promo_hours(self) -> set[int]:
        """Hours (epoch ms) with any promotion minute: the calendar's own spikes."""
        minutes = np.arange(self.start_ms // MINUTE_MS, self.until_ms // MINUTE_MS, dtype=np.int64)
        promo = self.shop.calendar.promo_level(minutes) > 0
        return {int(m * MINUTE_MS // HOUR_MS * HOUR_MS) for m in minutes[promo]}


def hour_inputs(series: HourlySeries, hour_ms: int, first_ms: int, settings: Settings) -> HourInputs:
    """The detector's inputs for one hour of the series (hours before `first_ms` do not exist)."""
    week = 7 * DAY_MS
    back = [hour_ms - k * week for k in range(1, settings.alert_baseline_weeks + 1)]
    back = [h for h in back if h >= first_ms]
    history = {
        rule: [float(getattr(series, rule).get(h, 0)) for h in back] for rule in ("net_sales", "orders", "sessions")
    }
    levels = {rule: float(getattr(series, rule).get(hour_ms, 0)) for rule in history}
    pooled = [
        hour_ms - k * HOUR_MS
        for k in range(1, settings.alert_share_baseline_hours + 1)
        if hour_ms - k * HOUR_MS >= first_ms
    ]
    attempts = int(series.payment_attempts.get(hour_ms, 0))
    failures = int(series.payment_failures.get(hour_ms, 0))
    base_failures = int(sum(series.payment_failures.get(h, 0) for h in pooled))
    base_attempts = int(sum(series.payment_attempts.get(h, 0) for h in pooled))
    return HourInputs(
        dt.datetime.fromtimestamp(hour_ms / 1000, dt.UTC),
        levels,
        history,
        payments=(failures, attempts),
        payments_baseline=(base_failures, base_attempts),
    )


def detect(series: HourlySeries, first_ms: int, hours: range, settings: Settings) -> list[Alert]:
    """Every alert of the given hours (epoch ms of hour starts)."""
    return [alert for hour in hours for alert in hour_alerts(hour_inputs(series, hour, first_ms, settings), settings)]
