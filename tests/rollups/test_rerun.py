"""Recomputing is idempotent and order-free: any rerun, range or order writes identical rows; late data
reruns exactly the partitions the affected-partitions map names, and they end up as a full recompute."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path

from shoppulse.lake import table_version
from shoppulse.lake.compaction import compact_partition
from shoppulse.lake.layout import LakeTable, read_partition
from shoppulse.lake.writer import append_events
from shoppulse.rollups import catalog
from shoppulse.rollups.affected import partitions_to_refresh, runs_by_partition
from shoppulse.rollups.runner import quality_write, run_event_rollups, run_partition_writes
from tests.rollups import scenario
from tests.rollups.conftest import fetch, write_fx
from tests.rollups.scenario import D1, D2

ALL_TABLES = [t for asset in (*catalog.EVENT_ROLLUPS, catalog.INGEST_QUALITY) for t in catalog.TABLES[asset]]


def serving_rows(url: str) -> dict[str, list[tuple]]:
    return {t.name: fetch(url, f"SELECT * FROM {t.qualified} ORDER BY {', '.join(t.key)}") for t in ALL_TABLES}


def roll_up(lake: Path, url: str, days: list, assets=catalog.EVENT_ROLLUPS) -> None:
    run_event_rollups(lake, url, days, assets, "USD")


def test_reruns_in_any_range_or_order_write_identical_rows(
    scenario_lake: Path, new_database: Callable[[], str]
) -> None:
    at_once, one_by_one = new_database(), new_database()
    for url in (at_once, one_by_one):
        write_fx(url, [D1, D2])
    roll_up(scenario_lake, at_once, [D1, D2])
    run_partition_writes(at_once, [D2], lambda day: quality_write(scenario_lake, day))
    for day in (D2, D1):  # newest first, one asset per run, users before sales
        for asset in reversed(catalog.EVENT_ROLLUPS):
            roll_up(scenario_lake, one_by_one, [day], [asset])
    run_partition_writes(one_by_one, [D2], lambda day: quality_write(scenario_lake, day))
    expected = serving_rows(at_once)
    assert sum(len(rows) for rows in expected.values()) > 2000
    assert serving_rows(one_by_one) == expected
    roll_up(scenario_lake, at_once, [D1, D2])  # and once more, over the same range
    assert serving_rows(at_once) == expected


def test_compaction_changes_files_not_rows(scenario_lake: Path, database: str) -> None:
    write_fx(database, [D1, D2])
    roll_up(scenario_lake, database, [D1, D2])
    before = serving_rows(database)
    assert len(read_partition(scenario_lake, LakeTable.EVENTS, D1).files) == 2
    compact_partition(scenario_lake, LakeTable.EVENTS, D1)
    assert len(read_partition(scenario_lake, LakeTable.EVENTS, D1).files) == 1
    roll_up(scenario_lake, database, [D1, D2])
    assert serving_rows(database) == before
    assert fetch(
        database,
        "SELECT lake_version FROM analytics.materializations WHERE asset = 'sales' AND partition_date = %s",
        D1,
    ) == [(5,)]  # the compaction commit, newer than what was read before


def test_a_rerun_as_of_a_table_version_writes_identical_rows(
    scenario_lake: Path, new_database: Callable[[], str]
) -> None:
    """The ledger's table version pins the input: rolling up "as of" it after the lake moved on (here a
    late event of D1 landed) gives exactly the rows computed back then."""
    then, rerun = new_database(), new_database()
    for url in (then, rerun):
        write_fx(url, [D1, D2])
    roll_up(scenario_lake, then, [D1, D2])
    (version,) = {
        v
        for (v,) in fetch(
            then, "SELECT DISTINCT lake_version FROM analytics.materializations WHERE asset <> 'fx_rates'"
        )
    }
    assert version == table_version(scenario_lake) == 4
    append_events(scenario_lake, scenario.frame(scenario.late_rows()))  # the lake moves on
    run_event_rollups(scenario_lake, rerun, [D1, D2], catalog.EVENT_ROLLUPS, "USD", version=version)
    assert serving_rows(rerun) == serving_rows(then)
    assert fetch(rerun, "SELECT DISTINCT lake_version FROM analytics.materializations WHERE asset <> 'fx_rates'") == [
        (version,)
    ]
    roll_up(scenario_lake, rerun, [D1, D2])  # as of the newest version: D1 has one more page view
    assert serving_rows(rerun) != serving_rows(then)


def test_late_event_reruns_only_the_partitions_it_reaches(tmp_path: Path, new_database: Callable[[], str]) -> None:
    lake = tmp_path / "lake"
    scenario.build_lake(lake, with_late=False)
    live, fresh = new_database(), new_database()
    for url in (live, fresh):
        write_fx(url, [D1, D2])
    roll_up(lake, live, [D1, D2])
    untouched = fetch(live, "SELECT asset, partition_date, materialized_at FROM analytics.materializations")

    append_events(lake, scenario.frame(scenario.late_rows()))  # u5's page view of D1 arrives late
    to_refresh = partitions_to_refresh([D1], last_partition=D2)
    assert to_refresh == {
        "customers": ["2025-03-10"],
        "funnel": ["2025-03-10"],
        "fx_rates": ["2025-03-10"],
        "products": ["2025-03-10"],
        "sales": ["2025-03-10"],
        "users": ["2025-03-10", "2025-03-11"],  # D2's first-hour windows and WAU/MAU reach back into D1
    }
    for key, assets in runs_by_partition(to_refresh).items():  # fx_rates: the test's own rates stay
        roll_up(lake, live, [dt.date.fromisoformat(key)], [a for a in assets if a != catalog.FX_RATES])

    roll_up(lake, fresh, [D1, D2])
    assert serving_rows(live) == serving_rows(fresh)
    rerun = {(asset, day) for asset, days in to_refresh.items() for day in days}
    after = {
        (asset, day): at
        for asset, day, at in fetch(
            live, "SELECT asset, partition_date, materialized_at FROM analytics.materializations"
        )
    }
    for asset, day, materialized_at in untouched:
        if asset != catalog.FX_RATES:
            rewritten = after[(asset, day)] != materialized_at
            assert rewritten == ((asset, day.isoformat()) in rerun), (asset, day)
    assert fetch(live, "SELECT dau FROM analytics.users_daily WHERE event_date = %s", D1) == [(5,)]
