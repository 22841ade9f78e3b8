"""Simulated weeks shared by the alert tests (generated once per session from the simulator's model)."""

from __future__ import annotations

import datetime as dt

import pytest

from simulator.faults import Incident
from simulator.model import DAY_MS
from tests.alerts.simulated import SimulatedShop

START = dt.datetime(2026, 9, 7, tzinfo=dt.UTC)  # a Monday
SESSIONS_PER_HOUR = 1000
WEEK_MS = 7 * DAY_MS


def utc_ms(text: str) -> int:
    return int(dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC).timestamp() * 1000)


OUTAGE = Incident("outage", utc_ms("2026-10-20T14:00"), utc_ms("2026-10-20T16:00"), 0.0)  # Tuesday of week 7
SPIKE = Incident("spike", utc_ms("2026-10-21T19:00"), utc_ms("2026-10-21T20:00"), 3.0)  # Wednesday of week 7


@pytest.fixture(scope="session")
def six_weeks() -> SimulatedShop:
    """Six weeks of a shop of ~1,000 sessions and ~30 orders an hour, default calendar (promotions on)."""
    shop = SimulatedShop(11, START, SESSIONS_PER_HOUR)
    shop.run_days(42)
    return shop


@pytest.fixture(scope="session")
def normal(six_weeks: SimulatedShop) -> SimulatedShop:
    """A seventh week as usual."""
    shop = six_weeks.fork()
    shop.run_days(7)
    return shop


@pytest.fixture(scope="session")
def with_incidents(six_weeks: SimulatedShop) -> SimulatedShop:
    """The same seventh week with an injected two-hour outage and a one-hour 3x spike."""
    shop = six_weeks.fork((OUTAGE, SPIKE))
    shop.run_days(7)
    return shop
