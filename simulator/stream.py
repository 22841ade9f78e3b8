"""The message stream: sessions generated window by window, messages released in send order.

Sessions are generated for a fixed grid of windows of session start times ([start, start + w),
[start + w, start + 2w), ...), so the stream's content depends only on the seed and the plan, never
on how fast it is consumed. A session's later events (and an order's refund weeks later) wait in a
pending buffer, sorted by send time, until the stream is advanced past them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
import polars as pl

from simulator.catalog import DEFAULT_PRODUCTS, Catalog, build_catalog
from simulator.encode import Encoder
from simulator.faults import KIND_MALFORMED, MESSAGE_SCHEMA, FaultConfig, FaultInjector, Incident
from simulator.model import DAY_MS, Behaviour, Calendar, Shop

DEFAULT_BATCH_EVENTS = 150_000
"""Events per generation window: large enough to amortize per-window work, small enough to pipeline."""


@lru_cache(maxsize=8)
def events_per_session(products: int = DEFAULT_PRODUCTS, seasonal: bool = True) -> float:
    """Average events a session produces (including its later payments, cancellations and refunds).

    Measured once on a throwaway shop (its own seed), so the caller's random stream is untouched.
    """
    shop = Shop(build_catalog(products), seed=0, behaviour=Behaviour(), seasonal=seasonal)
    shop.seed_population(10_000)
    start = 1_704_067_200_000  # 2024-01-01: a fixed week, promotions included when seasonal
    sessions = 40_000
    events = shop.generate(start, start + 7 * DAY_MS, sessions / (7 * DAY_MS))
    return events.count / max(events.sessions.height, 1)


@dataclass(frozen=True)
class TrafficPlan:
    """What to generate: seed, shop size, where time starts and how busy the shop is."""

    seed: int
    start_ms: int
    sessions_per_ms: float
    """Session arrival rate at traffic multiplier 1 (the calendar's average non-promo minute)."""
    seasonal: bool = True
    products: int = DEFAULT_PRODUCTS
    initial_users: int = 10_000
    batch_events: int = DEFAULT_BATCH_EVENTS
    behaviour: Behaviour = field(default_factory=Behaviour)
    incidents: tuple[Incident, ...] = ()
    """Outages and spikes injected into the traffic (see simulator.faults.Incident)."""

    @property
    def window_ms(self) -> int:
        """Window of session starts expected to hold about `batch_events` events."""
        events_per_ms = self.sessions_per_ms * events_per_session(self.products, self.seasonal)
        window = int(self.batch_events / max(events_per_ms, 1e-12))
        return int(np.clip(window, 200, 30 * DAY_MS))


def sessions_per_ms_for(
    events: float, start_ms: int, end_ms: int, seed: int, products: int = DEFAULT_PRODUCTS, seasonal: bool = True
) -> float:
    """Session rate (at multiplier 1) that yields about `events` events from sessions in [start, end).

    Uses the run's own calendar (`seed` decides which days have promotions).
    """
    calendar = Calendar(seed=seed, behaviour=Behaviour(), seasonal=seasonal)
    weight = calendar.integral(start_ms, end_ms)
    return events / (events_per_session(products, seasonal) * max(weight, 1.0))


class Stream:
    """Messages (MESSAGE_SCHEMA rows) in the order they are sent."""

    def __init__(self, plan: TrafficPlan, faults: FaultConfig, catalog: Catalog | None = None) -> None:
        self.plan = plan
        self.faults = faults
        self.catalog = catalog or build_catalog(plan.products)
        self.shop = Shop(self.catalog, plan.seed, plan.behaviour, seasonal=plan.seasonal, incidents=plan.incidents)
        self.shop.seed_population(plan.initial_users)
        self.encoder = Encoder(self.catalog, plan.seed)
        self.injector = FaultInjector(faults, plan.seed)
        self.window_ms = plan.window_ms
        self.generated_until = plan.start_ms
        self.events_generated = 0
        self.pending = pl.DataFrame(schema=MESSAGE_SCHEMA)

    def _window(self, start_ms: int, end_ms: int) -> pl.DataFrame:
        """The messages of sessions starting in [start_ms, end_ms), in generation order."""
        events = self.shop.generate(start_ms, end_ms, self.plan.sessions_per_ms)
        decisions = self.injector.decide(events)
        encoded = self.encoder.encode(events, decisions)
        self.events_generated += encoded.height
        return self.injector.arrange(encoded)

    def advance(self, until_ms: int) -> pl.DataFrame:
        """Every message sent before `until_ms` that was not returned yet, in send order."""
        windows = []
        while self.generated_until < until_ms:
            end = self.generated_until + self.window_ms
            windows.append(self._window(self.generated_until, end))
            self.generated_until = end
        if windows:
            # A stable sort: on equal send times, older pending messages first, then generation order.
            self.pending = pl.concat([self.pending, *windows], how="vertical").sort("release_ts", maintain_order=True)
        cut = int(np.searchsorted(self.pending["release_ts"].to_numpy(), until_ms, side="left"))
        released = self.pending.slice(0, cut)
        self.pending = self.pending.slice(cut)
        return released

    @property
    def pending_count(self) -> int:
        return self.pending.height


@dataclass
class WireBatch:
    """A released batch as the producer wants it: parallel lists, plus the frame for bookkeeping."""

    frame: pl.DataFrame
    values: list[str | bytes]
    keys: list[str]
    timestamps: list[int]

    @classmethod
    def of(cls, frame: pl.DataFrame) -> WireBatch:
        values: list[str | bytes] = frame["payload"].to_list()
        malformed = np.flatnonzero(frame["kind"].to_numpy() == KIND_MALFORMED)
        if len(malformed):
            bad = frame["bad"].gather(malformed).to_list()
            for index, raw in zip(malformed.tolist(), bad, strict=True):
                values[index] = raw
        return cls(frame=frame, values=values, keys=frame["key"].to_list(), timestamps=frame["release_ts"].to_list())

    def __len__(self) -> int:
        return len(self.values)
