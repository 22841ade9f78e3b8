"""Distinct-count rollups (users, funnel, customers) of a day too large for memory, recomputed in slices of
users: any bound gives exactly the rows of one full recompute, and the recompute check compares them."""

from __future__ import annotations

import math
import random
from pathlib import Path

import polars as pl
import psycopg
import pytest
from polars.testing import assert_frame_equal

from shoppulse.lake.layout import LakeTable, read_partition
from shoppulse.lake.writer import append_events
from shoppulse.rollups import catalog
from shoppulse.rollups.checks import recompute_and_compare
from shoppulse.rollups.fx import rates_in_force
from shoppulse.rollups.incremental import fold_partition
from shoppulse.rollups.runner import EventInputs, event_rollup_writes
from shoppulse.rollups.sliced import SLICE_SLACK, SLICED_ROLLUPS, sliced_rollup_writes
from tests.rollups import scenario
from tests.rollups.conftest import write_fx
from tests.rollups.test_incremental import BEFORE, DAY, random_stream


def with_session_owners(rows: list[dict]) -> list[dict]:
    """The stream with every session's events given to one user (the first seen with it), as real sessions are."""
    owner: dict[str, str] = {}
    for row in rows:
        row["user_id"] = owner.setdefault(row["session_id"], row["user_id"])
    return rows


def write_lake(lake: Path, rng: random.Random, rows: list[dict]) -> None:
    """The rows in a few appends (several files: the parts the slices are spilled from)."""
    cuts = sorted(rng.sample(range(1, len(rows)), k=min(len(rows) - 1, rng.randrange(1, 6))))
    for a, b in zip([0, *cuts], [*cuts, len(rows)], strict=True):
        append_events(lake, scenario.frame(rows[a:b]))


def full_recompute(lake: Path) -> dict[str, dict[str, pl.DataFrame]]:
    inputs = EventInputs(lake, with_users=True).read(DAY)
    return {w.asset: w.tables for w in event_rollup_writes(inputs, SLICED_ROLLUPS, None, "USD")}


def assert_same_tables(sliced: dict[str, pl.DataFrame], full: dict[str, pl.DataFrame]) -> None:
    assert set(sliced) == set(full)
    for name, frame in full.items():
        assert_frame_equal(sliced[name], frame.select(sliced[name].columns), check_row_order=False, check_dtypes=False)


@pytest.mark.parametrize("seed", range(10))
def test_slices_of_users_add_up_to_the_full_recompute(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    lake = tmp_path / "lake"
    write_lake(lake, rng, with_session_owners(random_stream(rng, rng.randrange(30, 220))))
    snapshot = read_partition(lake, LakeTable.EVENTS, DAY)
    max_events = rng.choice([2, 5, 13, 40, 10_000])
    sliced = sliced_rollup_writes(lake, snapshot, SLICED_ROLLUPS, max_events, tmp_path / "scratch")
    assert sliced.slices == max(1, math.ceil(snapshot.rows * SLICE_SLACK / max_events))
    assert sliced.sessions_across_users == 0
    full = full_recompute(lake)
    assert [w.asset for w in sliced.writes] == list(SLICED_ROLLUPS)
    for write in sliced.writes:
        assert write.lake_version == snapshot.version
        assert_same_tables(write.tables, full[write.asset])
    assert full[catalog.USERS]["active_users_minute"].height > 0  # the case is not trivially empty


def test_sessions_of_several_users_leave_only_customers_to_compare(tmp_path: Path) -> None:
    """Session counts do not add up over slices of users when a session has events of two users: users and
    funnel are not computed (the check reports the day), customers (who only count users) still are."""
    rng = random.Random(5)
    lake = tmp_path / "lake"
    write_lake(lake, rng, random_stream(rng, 160))  # sessions drawn independently of users
    snapshot = read_partition(lake, LakeTable.EVENTS, DAY)
    sliced = sliced_rollup_writes(lake, snapshot, SLICED_ROLLUPS, 20, tmp_path / "scratch")
    assert sliced.sessions_across_users > 0
    assert [w.asset for w in sliced.writes] == [catalog.CUSTOMERS]
    assert_same_tables(sliced.writes[0].tables, full_recompute(lake)[catalog.CUSTOMERS])


def test_the_check_compares_every_rollup_of_a_day_over_its_bound(
    tmp_path: Path, new_database, small_check_bound: int
) -> None:
    """Folded rows of a day over the check's bound match the sliced recompute, and a wrong served row of
    users, funnel or customers is caught."""
    rng = random.Random(21)
    url = new_database()
    write_fx(url, [BEFORE, DAY])
    lake = tmp_path / "lake"
    write_lake(lake, rng, with_session_owners([r for r in random_stream(rng, 200) if r["event_date"] <= DAY]))
    with psycopg.connect(url, autocommit=True) as conn:
        fold_partition(lake, conn, DAY, lambda d, c: rates_in_force(conn, d, c), "USD")
        results = recompute_and_compare(lake, conn, SLICED_ROLLUPS, DAY, "USD")
        assert read_partition(lake, LakeTable.EVENTS, DAY).rows > small_check_bound
        assert {r.asset: (r.comparable, r.differing_tables) for r in results} == {a: (True, {}) for a in SLICED_ROLLUPS}
        conn.execute("UPDATE analytics.users_daily SET mau = mau + 1")
        conn.execute(
            "UPDATE analytics.funnel_daily SET cart_sessions = cart_sessions + 1 WHERE (country, channel, device) "
            "= (SELECT country, channel, device FROM analytics.funnel_daily ORDER BY 1, 2, 3 LIMIT 1)"
        )
        conn.execute("UPDATE analytics.customers_daily SET returning_customers = returning_customers + 1")
        differing = {r.asset: r.differing_tables for r in recompute_and_compare(lake, conn, SLICED_ROLLUPS, DAY, "USD")}
    assert differing == {
        catalog.USERS: {"users_daily": 2},
        catalog.FUNNEL: {"funnel_daily": 2},
        catalog.CUSTOMERS: {"customers_daily": 2},
    }
