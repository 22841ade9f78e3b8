"""The reconciler: which partitions lag the lake, and when it reruns them (backoff, in-flight runs)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import psycopg

from shoppulse.lake.layout import LakeTable
from shoppulse.rollups import catalog
from shoppulse.rollups.reconcile import (
    Backoff,
    Lag,
    expected_versions,
    lagging,
    lake_partition_versions,
    ledger_versions,
    load_state,
    plan,
    record_status,
)
from shoppulse.rollups.runner import run_event_rollups
from tests.rollups import scenario
from tests.rollups.conftest import fetch, write_fx

D1, D2 = scenario.D1, scenario.D2
BACKOFF = Backoff(grace=10, base=30, max_delay=120)


def test_expected_versions_follow_what_each_rollup_reads() -> None:
    versions = {LakeTable.EVENTS: {D1: 3, D2: 5}, LakeTable.LATE: {D2: 4}, LakeTable.QUARANTINE: {D2: 6}}
    expected = expected_versions(versions, D1, D2 + dt.timedelta(days=2))
    assert expected[catalog.SALES] == {D1: 3, D2: 5}
    assert expected[catalog.USERS] == {D1: 3, D2: 5, D2 + dt.timedelta(days=1): 5, D2 + dt.timedelta(days=2): 5}
    assert expected[catalog.INGEST_QUALITY] == {D2: 6}


def test_a_stuck_partition_is_rerun_after_the_grace_then_ever_less_often() -> None:
    lags = [Lag(catalog.SALES, D1, 2, 3), Lag(catalog.USERS, D1, None, 3)]
    first = plan(lags, {}, set(), now=1000, backoff=BACKOFF)
    assert first.requests == {}  # first sight: the drain's own run usually catches it up
    times = []
    cursor = first.cursor()  # the state goes through the sensor cursor's JSON every tick
    for now in range(1000, 1400, 5):
        decided = plan(lags, load_state(cursor), set(), now, BACKOFF)
        if decided.requests:
            assert decided.requests[D1] == [catalog.FX_RATES, catalog.SALES, catalog.USERS]
            times.append(now)
        cursor = decided.cursor()
    assert times == [1010, 1040, 1100, 1220, 1340]  # grace 10, then 30, 60, 120, 120 (capped)
    assert load_state(cursor)[D1].attempts == 5


def test_a_partition_that_keeps_catching_up_is_never_rerun() -> None:
    """Today lags the live lake by a commit most of the time; its drain-triggered runs keep up."""
    state: dict = {}
    for tick, now in enumerate(range(0, 300, 15)):
        decided = plan([Lag(catalog.SALES, D2, 10 + tick, 11 + tick)], state, set(), now, BACKOFF)
        assert decided.requests == {}
        state = decided.state


def test_in_flight_partitions_are_left_to_their_run_and_caught_up_ones_forgotten() -> None:
    lags = [Lag(catalog.FUNNEL, D1, None, 3)]
    state = plan(lags, {}, set(), 0, BACKOFF).state
    assert plan(lags, state, {D1}, 100, BACKOFF).requests == {}
    assert plan(lags, state, set(), 100, BACKOFF).requests == {D1: [catalog.FUNNEL]}
    assert plan([], state, set(), 200, BACKOFF).state == {}


def test_the_scenario_lake_lags_until_rolled_up(scenario_lake: Path, database: str) -> None:
    last = D2 + dt.timedelta(days=1)
    expected = expected_versions(lake_partition_versions(scenario_lake), D1, last)
    with psycopg.connect(database, autocommit=True) as conn:
        before = lagging(expected, ledger_versions(conn))
        record_status(conn, plan(before, {}, set(), 0))
    assert {(lag.asset, lag.day) for lag in before} >= {(catalog.SALES, D1), (catalog.USERS, last)}
    assert len(fetch(database, "SELECT * FROM analytics.rollup_reconcile")) == len(before)

    write_fx(database, [D1, D2])
    run_event_rollups(scenario_lake, database, [D1, D2, last], catalog.EVENT_ROLLUPS, "USD")
    with psycopg.connect(database, autocommit=True) as conn:
        after = lagging(expected, ledger_versions(conn))
        record_status(conn, plan(after, {}, set(), 0))
    assert {lag.asset for lag in after} == {catalog.INGEST_QUALITY}  # not rolled up above
    assert {row[0] for row in fetch(database, "SELECT asset FROM analytics.rollup_reconcile")} == {
        catalog.INGEST_QUALITY
    }
