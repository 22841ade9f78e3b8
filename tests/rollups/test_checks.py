"""The recompute check's fingerprints: Polars and PostgreSQL must derive the same one from the same rows."""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection
from pathlib import Path

import psycopg

from shoppulse.rollups import catalog
from shoppulse.rollups.checks import (
    NET_SALES_PARTS,
    _digest_of_frame,
    _digest_served,
    net_sales_mismatches,
    recompute_and_compare,
    recompute_and_compare_days,
)
from shoppulse.rollups.fx import rates_in_force
from shoppulse.rollups.runner import (
    EventInputs,
    event_rollup_writes,
    fx_write,
    quality_write,
    run_event_rollups,
    run_partition_writes,
)
from tests.rollups.scenario import D1, D2


def test_fingerprints_agree_for_every_serving_table_and_catch_one_changed_value(
    scenario_lake: Path, database: str
) -> None:
    run_partition_writes(database, [D1, D2], fx_write)
    run_event_rollups(scenario_lake, database, [D1, D2], catalog.EVENT_ROLLUPS, "USD")
    run_partition_writes(database, [D2], lambda day: quality_write(scenario_lake, day))
    with psycopg.connect(database, autocommit=True) as conn:

        def fx(day: dt.date, currencies: Collection[str]) -> dict:
            return rates_in_force(conn, day, currencies)

        inputs = EventInputs(scenario_lake, with_users=True).read(D2)
        writes = [
            *event_rollup_writes(inputs, catalog.EVENT_ROLLUPS, fx, "USD"),
            fx_write(D2),
            quality_write(scenario_lake, D2),
        ]
        tables_with_rows = 0
        for write in writes:
            for table in catalog.TABLES[write.asset]:
                fresh = _digest_of_frame(write.tables[table.name], table)
                assert fresh == _digest_served(conn, table, D2), table.name
                tables_with_rows += fresh[0] > 0
        # timestamps, dates, text, char(3), numeric FX rates and counts all on the fast path
        assert tables_with_rows == sum(len(catalog.TABLES[a]) for a in catalog.ALL_ROLLUPS)
        assert all(r.matches for r in recompute_and_compare(scenario_lake, conn, catalog.ALL_ROLLUPS, D2, "USD"))

        conn.execute("UPDATE analytics.funnel_daily SET cart_sessions = cart_sessions + 1 WHERE event_date = %s", (D2,))
        funnel = next(w for w in writes if w.asset == catalog.FUNNEL)
        table = catalog.TABLES[catalog.FUNNEL][0]
        assert _digest_of_frame(funnel.tables[table.name], table) != _digest_served(conn, table, D2)
        [tampered] = recompute_and_compare(scenario_lake, conn, [catalog.FUNNEL], D2, "USD")
    rows_on_d2 = funnel.tables[table.name].height
    assert tampered.differing_tables == {"funnel_daily": 2 * rows_on_d2}  # each row: one old, one new version

    # Several days at once, each on its own connection: results in the order the days were given.
    both = recompute_and_compare_days(scenario_lake, database, [catalog.SALES, catalog.FUNNEL], [D2, D1], "USD")
    assert [(r.day, r.asset, r.matches) for r in both] == [
        (D2, catalog.SALES, True),
        (D2, catalog.FUNNEL, False),
        (D1, catalog.SALES, True),
        (D1, catalog.FUNNEL, True),
    ]


def test_net_sales_sums_over_several_days_find_the_tampered_day(scenario_lake: Path, database: str) -> None:
    run_partition_writes(database, [D1, D2], fx_write)
    run_event_rollups(scenario_lake, database, [D1, D2], catalog.EVENT_ROLLUPS, "USD")
    assert net_sales_mismatches(database, [D1, D2]) == ([D1, D2], [])
    with psycopg.connect(database, autocommit=True) as conn:
        conn.execute("UPDATE analytics.sales_daily SET net_sales = net_sales + 7 WHERE event_date = %s", (D1,))
        tampered = conn.execute("SELECT count(*) FROM analytics.sales_daily WHERE event_date = %s", (D1,)).fetchone()
    for days in ([D1, D2], [D1]):  # several days (a connection per table) and a live run's single day
        compared, mismatches = net_sales_mismatches(database, days)
        assert compared == days
        assert {m.table for m in mismatches} == set(NET_SALES_PARTS)
        assert len(mismatches) == len(NET_SALES_PARTS) * tampered[0]
        assert all(m.day == D1 and m.sales_net_sales == m.table_net_sales + 7 for m in mismatches)
