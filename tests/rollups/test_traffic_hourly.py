"""`traffic_hourly` (users rollup) and `quarantine_hourly` (ingest_quality rollup): the anomaly detector's
hourly inputs, against hand-computed numbers of tests/rollups/scenario.py."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl
import pytest

from shoppulse.rollups import catalog
from shoppulse.rollups.runner import quality_write, run_event_rollups, run_partition_writes
from shoppulse.rollups.traffic import traffic_hourly
from tests.rollups.conftest import fetch, write_fx
from tests.rollups.scenario import D1, D2, at


@pytest.fixture
def rolled_up(scenario_lake: Path, database: str) -> str:
    write_fx(database, [D1, D2])
    run_event_rollups(scenario_lake, database, [D1, D2], catalog.EVENT_ROLLUPS, "USD", run_id="test")
    run_partition_writes(database, [D2], lambda day: quality_write(scenario_lake, day, "test"))
    return database


def test_traffic_hourly_of_the_scenario(rolled_up: str) -> None:
    rows = fetch(rolled_up, "SELECT * FROM analytics.traffic_hourly ORDER BY hour_start")
    # (hour, sessions, events): D1 10h s1 (5 events; o1's second copy dropped) and s4 (2); 12h o3; 15h its
    # cancellation; 23h o2 (s2) and the late page view (s6); D2 00h o4, 08h the refund, 09h o2's cancellation.
    expected = [
        (D1, "10", 2, 7),
        (D1, "12", 1, 1),
        (D1, "15", 1, 1),
        (D1, "23", 2, 2),
        (D2, "00", 1, 1),
        (D2, "08", 1, 1),
        (D2, "09", 1, 1),
    ]
    assert rows == [(day, at(day, f"{hour}:00:00"), s, e, 0, 0) for day, hour, s, e in expected]


def test_quarantine_hourly_by_hour_received(rolled_up: str) -> None:
    assert fetch(rolled_up, "SELECT * FROM analytics.quarantine_hourly ORDER BY hour_start") == [
        (D2, at(D2, "01:00:00"), 1),
        (D2, at(D2, "02:00:00"), 1),
    ]


def test_payments_and_failures_per_hour() -> None:
    ts = [at(D1, t) for t in ("10:00:00", "10:30:00", "10:59:59", "11:00:00")]
    events = pl.DataFrame(
        {
            "event_type": ["payment", "payment", "page_view", "payment"],
            "payment_status": ["captured", "failed", None, "failed"],
            "session_id": ["s1", "s2", "s2", "s2"],
            "event_ts": ts,
        },
        schema_overrides={"event_ts": pl.Datetime("ms", "UTC")},
    )
    rows = (
        traffic_hourly(events, D1)
        .sort("hour_start")
        .select("hour_start", "sessions", "events", "payment_attempts", "payment_failures")
    )
    assert rows.rows() == [(at(D1, "10:00:00"), 2, 3, 2, 1), (at(D1, "11:00:00"), 1, 1, 1, 1)]
    assert traffic_hourly(events.clear(), D1).is_empty()
    assert isinstance(rows["hour_start"][0], dt.datetime)
