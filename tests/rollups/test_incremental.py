"""Incremental folding gives exactly the rows of a full recompute, for every table, whatever the batches.

Seeded random event streams (duplicates, copies delivered out of order, late events, refunds,
cancellations, sessions across midnight) are committed to a lake in random batches; after each batch
the day is folded, and at the end (and after some batches) its serving rows are compared with a fresh
full recompute from the lake (`recompute_and_compare`).
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Collection
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest

from shoppulse.lake.compaction import compact_partition
from shoppulse.lake.layout import LakeTable, read_partition
from shoppulse.lake.writer import append_events
from shoppulse.rollups import catalog, checks
from shoppulse.rollups.checks import recompute_and_compare
from shoppulse.rollups.fx import rates_in_force
from shoppulse.rollups.incremental import fold_partition
from shoppulse.rollups.incremental.fold import read_header
from shoppulse.rollups.runner import ADDITIVE_ROLLUPS
from shoppulse.rollups.source import load_day_added
from tests.rollups import scenario
from tests.rollups.conftest import write_fx

DAY = dt.date(2025, 3, 10)
BEFORE = DAY - dt.timedelta(days=1)
COUNTRIES, CHANNELS, DEVICES = ("US", "DE", "JP"), ("direct", "email"), ("desktop", "mobile")
CURRENCIES = ("USD", "EUR", "JPY")
PRODUCTS = [(f"p{i}", f"c{i % 3}") for i in range(6)]


def random_stream(rng: random.Random, size: int) -> list[dict]:
    """Events of DAY (and the previous day's last hour), with every fault the lake can hold."""
    rows: list[dict] = []
    users = [f"u{i}" for i in range(max(3, size // 6))]
    for index in range(size):
        user = rng.choice(users)
        session = f"s{rng.randrange(max(2, size // 4))}"
        base = dt.datetime.combine(DAY, dt.time(), dt.UTC)
        if rng.random() < 0.1:  # the previous evening: sessions across midnight, the first windows' tail
            ts = base - dt.timedelta(seconds=rng.randrange(1, 3600))
        elif rng.random() < 0.1:  # earlier days of the WAU / MAU windows
            ts = base - dt.timedelta(days=rng.choice([1, 3, 6, 7, 20, 29, 30]), seconds=rng.randrange(0, 86_400))
        elif rng.random() < 0.3:
            ts = base + dt.timedelta(seconds=rng.randrange(0, 1800))
        else:
            ts = base + dt.timedelta(seconds=rng.randrange(0, 86_400))
        context = {
            "country": rng.choice(COUNTRIES),
            "channel": rng.choice(CHANNELS),
            "device": rng.choice(DEVICES),
            "kafka_delay": dt.timedelta(seconds=rng.randrange(1, 7200)),
            "kafka_partition": rng.randrange(3),
        }
        kind = rng.random()
        if kind < 0.5:
            row = scenario.event(
                rng.choice(["page_view", "product_view", "add_to_cart", "checkout_started"]),
                ts,
                user,
                session,
                **context,
            )
        else:
            currency = rng.choice(CURRENCIES)
            product, category = rng.choice(PRODUCTS)
            quantity, price = rng.randrange(1, 4), rng.randrange(100, 5000)
            order_id = f"o{index}"
            if kind < 0.8:
                lines = [scenario.line(product, category, quantity, price, rng.randrange(0, 100))]
                row = scenario.order(
                    "order_placed", ts, user, session, order_id, currency, lines, 50, 20,
                    order_number=rng.choice([1, 2, 3, None]), **context,
                )  # fmt: skip
            elif kind < 0.9:
                lines = [scenario.line(product, category, quantity, price)]
                row = scenario.order("order_cancelled", ts, user, session, order_id, currency, lines, 50, 20, **context)
            else:
                lines = [scenario.refund_line(product, category, 1, rng.randrange(50, 500))]
                row = scenario.refund(ts, user, session, order_id, currency, lines, 0, 10, **context)
        rows.append(row)
        if rng.random() < 0.15:  # a copy: redelivered later, or (another partition) delivered earlier
            copy = dict(row)
            copy["kafka_offset"] = row["kafka_offset"] + 100_000
            copy["kafka_partition"] = rng.randrange(3)
            copy["kafka_ts"] = row["kafka_ts"] + dt.timedelta(seconds=rng.randrange(-600, 7200))
            copy["country"] = rng.choice(COUNTRIES)  # a copy that must lose keeps its own (wrong) context
            rows.append(copy)
    rng.shuffle(rows)  # out of order, late: any event may come in any batch
    return rows


def assert_matches_recompute(lake: Path, url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        results = recompute_and_compare(lake, conn, catalog.EVENT_ROLLUPS, DAY, "USD")
    assert all(r.comparable for r in results), [(r.asset, r.ledger_version, r.lake_version) for r in results]
    assert {r.asset: r.differing_tables for r in results if not r.matches} == {}


@pytest.mark.parametrize("seed", range(10))
def test_random_batches_fold_to_the_full_recompute(tmp_path: Path, new_database, seed: int) -> None:
    rng = random.Random(seed)
    url = new_database()
    write_fx(url, [BEFORE, DAY])
    lake = tmp_path / "lake"
    stream = random_stream(rng, rng.randrange(20, 160))
    today = [row for row in stream if row["event_date"] == DAY]
    # Any day's rows may come in any batch: late events of the previous days move the users window.
    cuts = sorted(rng.sample(range(1, len(stream)), k=min(len(stream) - 1, rng.randrange(1, 8))))
    batches = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
    folded = 0
    incremental = 0
    with psycopg.connect(url, autocommit=True) as conn:

        def fx(day: dt.date, currencies: Collection[str]) -> dict[str, Decimal]:
            return rates_in_force(conn, day, currencies)

        for number, batch in enumerate(batches):
            append_events(lake, scenario.frame(batch))
            outcome = fold_partition(lake, conn, DAY, fx, "USD")
            folded += outcome.events_folded
            assert outcome.rebuilt or number > 0, outcome  # the first fold builds the state
            incremental += not outcome.rebuilt
            if rng.random() < 0.3:
                assert_matches_recompute(lake, url)
    assert_matches_recompute(lake, url)
    assert folded >= len({row["event_id"] for row in today})  # every event folded (rebuilds refold)
    print(f"seed {seed}: {len(batches)} batches, {incremental} folded incrementally")


@pytest.mark.parametrize("seed", range(8))
def test_backlogs_and_rebuilds_in_bounded_steps_fold_to_the_full_recompute(
    tmp_path: Path, new_database, seed: int
) -> None:
    """With a memory bound of a few events: backlogs of several commits fold in steps, and rebuilds (no
    state, or an earlier copy arrived) read the day in chunks of files whose copies lose to copies in
    other chunks. Every result equals the full recompute."""
    rng = random.Random(1000 + seed)
    url = new_database()
    write_fx(url, [BEFORE, DAY])
    lake = tmp_path / "lake"
    stream = random_stream(rng, rng.randrange(60, 200))
    cuts = sorted(rng.sample(range(1, len(stream)), k=rng.randrange(6, 14)))
    batches = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
    steps = chunked_rebuilds = 0
    with psycopg.connect(url, autocommit=True) as conn:

        def fx(day: dt.date, currencies: Collection[str]) -> dict[str, Decimal]:
            return rates_in_force(conn, day, currencies)

        for batch in batches:
            append_events(lake, scenario.frame(batch))
            if rng.random() < 0.5:
                continue  # the backlog grows: the next fold takes several commits
            if rng.random() < 0.25:  # state lost: the next fold rebuilds
                conn.execute("DELETE FROM analytics.fold_days WHERE event_date = %s", (DAY,))
            outcome = fold_partition(lake, conn, DAY, fx, "USD", max_events=rng.randrange(2, 25))
            steps += outcome.steps
            chunked_rebuilds += outcome.rebuilt and outcome.steps > 1
            assert_matches_recompute(lake, url)
        outcome = fold_partition(lake, conn, DAY, fx, "USD", max_events=rng.randrange(2, 25))
        chunked_rebuilds += outcome.rebuilt and outcome.steps > 1
        assert_matches_recompute(lake, url)
        conn.execute("DELETE FROM analytics.fold_days WHERE event_date = %s", (DAY,))
        outcome = fold_partition(lake, conn, DAY, fx, "USD", max_events=rng.randrange(2, 25))
        assert outcome.rebuilt and outcome.steps > 1, outcome  # the whole day, in chunks of files
        assert_matches_recompute(lake, url)
    print(f"seed {seed}: {len(batches)} commits, {steps} fold steps, {chunked_rebuilds + 1} chunked rebuilds")


def test_scenario_days_fold_like_the_hand_computed_recompute(scenario_lake: Path, database: str) -> None:
    """The hand-built scenario (duplicate whose copy must lose, late commit, refunds, cancellations)."""
    write_fx(database, [scenario.D1, scenario.D2])
    with psycopg.connect(database, autocommit=True) as conn:
        for day in (scenario.D1, scenario.D2):
            fold_partition(scenario_lake, conn, day, lambda d, c: rates_in_force(conn, d, c), "USD")
            results = recompute_and_compare(scenario_lake, conn, catalog.EVENT_ROLLUPS, day, "USD")
            assert {r.asset: r.differing_tables for r in results if not r.matches or not r.comparable} == {}


def test_late_events_fold_without_rebuilding_and_an_earlier_copy_rebuilds(tmp_path: Path, new_database) -> None:
    url = new_database()
    write_fx(url, [BEFORE, DAY])
    lake = tmp_path / "lake"
    at = scenario.at
    first_id = "00000000-0000-4000-8000-0000000000e1"
    first = scenario.event("page_view", at(DAY, "00:10:00"), "u1", "s1", event_id=first_id)
    stream = [
        [first, scenario.event("product_view", at(DAY, "00:12:00"), "u2", "s2", country="DE")],
        # late: the previous day's last hour (sliding windows' tail), users entering the WAU / MAU windows,
        # a redelivered copy (delivered later: it loses) and a session's new first event (dimensions move)
        [
            scenario.event("page_view", at(BEFORE, "23:30:00"), "u3", "s3"),
            scenario.event("page_view", at(DAY - dt.timedelta(days=3), "08:00:00"), "u1", "s0"),
            scenario.event("page_view", at(DAY - dt.timedelta(days=20), "08:00:00"), "u2", "s9"),
            {**first, "kafka_offset": 99_001, "kafka_ts": first["kafka_ts"] + dt.timedelta(hours=2)},
            scenario.event("add_to_cart", at(DAY, "00:05:00"), "u2", "s2", country="JP", device="mobile"),
            scenario.event("page_view", at(DAY, "00:20:00"), "u3", "s3"),
        ],
    ]
    with psycopg.connect(url, autocommit=True) as conn:

        def fx(day: dt.date, currencies: Collection[str]) -> dict[str, Decimal]:
            return rates_in_force(conn, day, currencies)

        outcomes = []
        for batch in stream:
            append_events(lake, scenario.frame(batch))
            outcomes.append(fold_partition(lake, conn, DAY, fx, "USD"))
        assert [o.rebuilt for o in outcomes] == [True, False]
        assert outcomes[1].events_folded == 2  # the copy of e1 lost to the counted one
        assert_matches_recompute(lake, url)
        funnel = conn.execute("SELECT country, device, sessions FROM analytics.funnel_daily ORDER BY 1").fetchall()
        assert funnel == [("JP", "mobile", 1), ("US", "desktop", 2)]  # s2 moved from DE to its new first event
        wau, mau = conn.execute("SELECT wau, mau FROM analytics.users_daily").fetchone()  # type: ignore[misc]
        assert (wau, mau) == (3, 3)

        earlier = {**first, "kafka_offset": 1, "kafka_ts": first["kafka_ts"] - dt.timedelta(seconds=1), "country": "DE"}
        append_events(lake, scenario.frame([earlier]))  # a copy delivered BEFORE the counted one: it wins
        assert fold_partition(lake, conn, DAY, fx, "USD").rebuilt
        assert_matches_recompute(lake, url)


def test_the_recompute_check_reads_the_day_at_the_served_version(tmp_path: Path, new_database) -> None:
    """Live traffic moves the lake on between a fold and its check: the check still compares, at the
    version the serving rows reflect, and a wrong served row fails it."""
    url = new_database()
    write_fx(url, [BEFORE, DAY])
    lake = tmp_path / "lake"
    append_events(lake, scenario.frame([scenario.event("page_view", scenario.at(DAY, "01:00:00"), "u1", "s1")]))
    with psycopg.connect(url, autocommit=True) as conn:
        fold_partition(lake, conn, DAY, lambda d, c: rates_in_force(conn, d, c), "USD")
        append_events(lake, scenario.frame([scenario.event("page_view", scenario.at(DAY, "02:00:00"), "u2", "s2")]))
        results = recompute_and_compare(lake, conn, catalog.EVENT_ROLLUPS, DAY, "USD")
        assert [(r.comparable, r.matches) for r in results] == [(True, True)] * len(catalog.EVENT_ROLLUPS)
        conn.execute("UPDATE analytics.users_daily SET page_views = page_views + 1 WHERE event_date = %s", (DAY,))
        results = recompute_and_compare(lake, conn, [catalog.USERS], DAY, "USD")
        assert [(r.comparable, r.differing_tables) for r in results] == [(True, {"users_daily": 2})]


def test_a_fold_committing_during_the_check_leaves_it_comparable(
    tmp_path: Path, new_database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Today's check takes minutes on a big day while live runs fold every few seconds: it compares the
    ledger and serving rows as of its start (one REPEATABLE READ snapshot), so a fold that commits while
    it recomputes neither makes the day incomparable nor a difference."""
    url = new_database()
    write_fx(url, [BEFORE, DAY])
    lake = tmp_path / "lake"
    append_events(lake, scenario.frame([scenario.event("page_view", scenario.at(DAY, "01:00:00"), "u1", "s1")]))
    live = psycopg.connect(url, autocommit=True)
    fold_partition(lake, live, DAY, lambda d, c: rates_in_force(live, d, c), "USD")
    real_read = checks.read_partition
    folds_during_check = []

    def read_then_fold_live(*args, **kwargs):
        snapshot = real_read(*args, **kwargs)
        if not folds_during_check:  # a live run lands while the check recomputes
            append_events(lake, scenario.frame([scenario.event("page_view", scenario.at(DAY, "02:00:00"), "u2", "s2")]))
            folds_during_check.append(fold_partition(lake, live, DAY, lambda d, c: rates_in_force(live, d, c), "USD"))
        return snapshot

    monkeypatch.setattr(checks, "read_partition", read_then_fold_live)
    with live:
        results = checks.recompute_and_compare_days(lake, url, catalog.EVENT_ROLLUPS, [DAY], "USD")
    assert folds_during_check[0].events_folded == 1
    assert [(r.comparable, r.matches) for r in results] == [(True, True)] * len(catalog.EVENT_ROLLUPS)


def test_a_compaction_between_folds_keeps_folding(tmp_path: Path, new_database) -> None:
    """The drain compacts today's small files all day: the files it merged that were not folded yet are
    still read on their own (until vacuumed), so the next fold stays incremental and exact."""
    url = new_database()
    write_fx(url, [BEFORE, DAY])
    lake = tmp_path / "lake"
    rng = random.Random(42)
    stream = [row for row in random_stream(rng, 120) if row["event_date"] == DAY]
    first_copies = {}
    for row in stream:  # copies delivered later only (an earlier one would rebuild, by design)
        first_copies.setdefault(row["event_id"], row["kafka_ts"])
    stream = [row for row in stream if row["kafka_ts"] >= first_copies[row["event_id"]]]
    with psycopg.connect(url, autocommit=True) as conn:

        def fx(day: dt.date, currencies: Collection[str]) -> dict[str, Decimal]:
            return rates_in_force(conn, day, currencies)

        append_events(lake, scenario.frame(stream[:40]))
        assert fold_partition(lake, conn, DAY, fx, "USD").rebuilt
        for part in (stream[40:60], stream[60:80]):
            append_events(lake, scenario.frame(part))
        files_before = len(read_partition(lake, LakeTable.EVENTS, DAY).files)
        compact_partition(lake, LakeTable.EVENTS, DAY)  # optimize merges folded and unfolded rows
        assert len(read_partition(lake, LakeTable.EVENTS, DAY).files) < files_before
        append_events(lake, scenario.frame(stream[80:]))
        added, _ = load_day_added(lake, DAY, read_header(conn, DAY)["lake_version"])  # type: ignore[index]
        assert added is not None and added.events.height == len({row["event_id"] for row in stream[40:]})
        outcome = fold_partition(lake, conn, DAY, fx, "USD")
        assert not outcome.rebuilt
        assert outcome.events_in == len({row["event_id"] for row in stream[40:]})
    assert_matches_recompute(lake, url)


def test_many_new_pairs_with_and_without_folded_neighbours(tmp_path: Path, new_database) -> None:
    """Hundreds of (user, minute) pairs, the first ones with no folded neighbour (regression: the probe's
    rows were typed from the first rows only)."""
    url = new_database()
    write_fx(url, [BEFORE, DAY])
    lake = tmp_path / "lake"
    at = scenario.at
    known = [scenario.event("page_view", at(DAY, "00:30:00"), f"u{i}", f"s{i}") for i in range(300)]
    newcomers = [scenario.event("page_view", at(DAY, "00:20:00"), f"n{i}", f"t{i}") for i in range(200)]
    returning = [scenario.event("page_view", at(DAY, "00:10:00"), f"u{i}", f"s{i}") for i in range(300)]
    with psycopg.connect(url, autocommit=True) as conn:
        for batch in (known, newcomers + returning):
            append_events(lake, scenario.frame(batch))
            fold_partition(lake, conn, DAY, lambda d, c: rates_in_force(conn, d, c), "USD")
    assert_matches_recompute(lake, url)


def test_the_recompute_check_sums_a_day_over_its_bound_in_parts(
    tmp_path: Path, new_database, small_check_bound: int
) -> None:
    """A day too large to recompute in memory: sales and products (sums) are recomputed in parts of at most
    the bound (copies losing across parts), and still catch a wrong served row; customers are recomputed in
    slices of users; users and funnel, whose sessions here have events of several users (so session counts
    do not add up over slices), are reported as not comparable (tests/rollups/test_sliced.py: sessions of
    one user each)."""
    rng = random.Random(77)
    url = new_database()
    write_fx(url, [BEFORE, DAY])
    lake = tmp_path / "lake"
    stream = [row for row in random_stream(rng, 160) if row["event_date"] == DAY]
    for start in range(0, len(stream), 25):
        append_events(lake, scenario.frame(stream[start : start + 25]))
    rows = read_partition(lake, LakeTable.EVENTS, DAY).rows
    with psycopg.connect(url, autocommit=True) as conn:
        fold_partition(lake, conn, DAY, lambda d, c: rates_in_force(conn, d, c), "USD")
        results = recompute_and_compare(lake, conn, catalog.EVENT_ROLLUPS, DAY, "USD")
        assert rows > small_check_bound
        assert {r.asset: (r.sessions_across_users > 0, r.comparable, r.matches) for r in results} == {
            catalog.SALES: (False, True, True),
            catalog.PRODUCTS: (False, True, True),
            catalog.CUSTOMERS: (False, True, True),
            **{a: (True, False, True) for a in (catalog.USERS, catalog.FUNNEL)},
        }
        conn.execute("UPDATE analytics.product_sales_daily SET units = units + 1 WHERE product_id = 'p1'")
        conn.execute("UPDATE analytics.sales_hourly_reporting SET net_sales = net_sales + 1")
        differing = {
            r.asset: r.differing_tables for r in recompute_and_compare(lake, conn, ADDITIVE_ROLLUPS, DAY, "USD")
        }
        hours = conn.execute("SELECT count(*) FROM analytics.sales_hourly_reporting").fetchone()[0]  # type: ignore[index]
        assert differing == {
            catalog.SALES: {"sales_hourly_reporting": 2 * hours},
            catalog.PRODUCTS: {"product_sales_daily": 2 * len(CURRENCIES)},
        }
