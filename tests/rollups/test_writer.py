"""Partition replace: one transaction per (asset, partition), with its ledger row and NOTIFY."""

from __future__ import annotations

import datetime as dt

import polars as pl
import psycopg
import pytest

from shoppulse.rollups import catalog
from shoppulse.rollups.writer import NOTIFY_CHANNEL, PartitionWrite, replace_partition
from tests.rollups.conftest import fetch

DAY = dt.date(2025, 3, 10)
OTHER_DAY = dt.date(2025, 3, 11)


def customers_row(day: dt.date, customers: int) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "event_date": [day],
            "customers": [customers],
            "first_time_customers": [1],
            "returning_customers": [customers - 1],
            "orders": [customers],
            "first_time_orders": [1],
            "returning_orders": [customers - 1],
        }
    )


def funnel_rows(day: dt.date, countries: list[str], sessions: int | None = 1) -> pl.DataFrame:
    n = len(countries)
    return pl.DataFrame(
        {
            "event_date": [day] * n,
            "country": countries,
            "channel": ["direct"] * n,
            "device": ["mobile"] * n,
            "sessions": [sessions] * n,
            "product_view_sessions": [0] * n,
            "cart_sessions": [0] * n,
            "checkout_sessions": [0] * n,
            "purchase_sessions": [0] * n,
        },
        schema_overrides={"sessions": pl.Int64},
    )


def write(conn: psycopg.Connection, day: dt.date, customers: int, version: int, run_id: str) -> bool:
    outcome = replace_partition(
        conn,
        PartitionWrite(
            catalog.CUSTOMERS,
            day,
            {"customers_daily": customers_row(day, customers)},
            lake_version=version,
            source_offsets={"v": version},
            max_event_ts=dt.datetime.combine(day, dt.time(12), dt.UTC),
            run_id=run_id,
        ),
    )
    return outcome.written


def test_rewrite_replaces_rows_and_ledger(database: str) -> None:
    with psycopg.connect(database, autocommit=True) as conn:
        assert write(conn, DAY, 5, version=3, run_id="r1")
        assert write(conn, OTHER_DAY, 7, version=3, run_id="r1")
        before = fetch(database, "SELECT * FROM analytics.customers_daily ORDER BY 1")
        assert write(conn, DAY, 5, version=3, run_id="r2")
    assert fetch(database, "SELECT * FROM analytics.customers_daily ORDER BY 1") == before
    ledger = fetch(
        database,
        "SELECT partition_date, row_count, lake_version, run_id FROM analytics.materializations ORDER BY 1",
    )
    assert ledger == [(DAY, 1, 3, "r2"), (OTHER_DAY, 1, 3, "r1")]


def test_older_snapshot_never_overwrites_a_newer_one(database: str) -> None:
    with psycopg.connect(database, autocommit=True) as conn:
        assert write(conn, DAY, 9, version=8, run_id="new")
        assert not write(conn, DAY, 4, version=7, run_id="old")  # a slower run that read the lake earlier
        assert fetch(database, "SELECT customers FROM analytics.customers_daily") == [(9,)]
        assert fetch(database, "SELECT lake_version, run_id FROM analytics.materializations") == [(8, "new")]
        assert write(conn, DAY, 10, version=8, run_id="rerun")  # the same version rewrites
    assert fetch(database, "SELECT customers FROM analytics.customers_daily") == [(10,)]


def test_notify_is_sent_when_the_write_commits(database: str) -> None:
    with psycopg.connect(database, autocommit=True) as listener, psycopg.connect(database, autocommit=True) as conn:
        listener.execute(f"LISTEN {NOTIFY_CHANNEL}")
        write(conn, DAY, 5, version=1, run_id="r")
        write(conn, DAY, 5, version=0, run_id="stale")  # skipped: no notification
        received = [n.payload for n in listener.notifies(timeout=2.0, stop_after=2)]
    assert received == ["customers:2025-03-10"]


def test_a_failing_write_leaves_the_partition_as_it_was(database: str) -> None:
    with psycopg.connect(database, autocommit=True) as conn:
        good = funnel_rows(DAY, ["DE", "FR"])
        replace_partition(conn, PartitionWrite(catalog.FUNNEL, DAY, {"funnel_daily": good}, lake_version=1))
        broken = funnel_rows(DAY, ["US", "GB", "JP"], sessions=None)  # NOT NULL violated in the COPY
        with pytest.raises(psycopg.errors.NotNullViolation):
            replace_partition(conn, PartitionWrite(catalog.FUNNEL, DAY, {"funnel_daily": broken}, lake_version=2))
    assert fetch(database, "SELECT country FROM analytics.funnel_daily ORDER BY 1") == [("DE",), ("FR",)]
    assert fetch(database, "SELECT lake_version FROM analytics.materializations") == [(1,)]


def test_every_table_of_the_asset_is_required(database: str) -> None:
    with psycopg.connect(database, autocommit=True) as conn, pytest.raises(ValueError, match="users_daily"):
        replace_partition(conn, PartitionWrite(catalog.USERS, DAY, {"active_users_minute": pl.DataFrame()}, 1))


def _row_versions(database: str) -> dict[str, tuple[int, str]]:
    """country -> (sessions, xmin): xmin is the transaction that wrote the row version."""
    rows = fetch(database, "SELECT country, sessions, xmin::text FROM analytics.funnel_daily")
    return {country: (sessions, xmin) for country, sessions, xmin in rows}


def test_a_rewrite_writes_only_the_rows_that_differ(database: str) -> None:
    with psycopg.connect(database, autocommit=True) as conn:
        first = funnel_rows(DAY, ["DE", "FR", "GB"], sessions=4)
        initial = replace_partition(conn, PartitionWrite(catalog.FUNNEL, DAY, {"funnel_daily": first}, 1))
        assert initial.rows_changed == 3
        written = _row_versions(database)

        rerun = replace_partition(conn, PartitionWrite(catalog.FUNNEL, DAY, {"funnel_daily": first}, 1, run_id="r"))
        assert _row_versions(database) == written  # identical rerun: no row was touched
        assert rerun.rows_changed == 0
        assert fetch(database, "SELECT run_id FROM analytics.materializations") == [("r",)]

        changed = pl.concat([funnel_rows(DAY, ["DE"], sessions=9), funnel_rows(DAY, ["GB", "US"], sessions=4)])
        outcome = replace_partition(conn, PartitionWrite(catalog.FUNNEL, DAY, {"funnel_daily": changed}, 2))
    assert outcome.rows_changed == 4  # DE out and in again, FR out, US in
    after = _row_versions(database)
    assert {country: sessions for country, (sessions, _) in after.items()} == {"DE": 9, "GB": 4, "US": 4}
    assert after["GB"] == written["GB"]  # unchanged row kept as it was
    assert after["DE"][1] != written["DE"][1] and after["US"][1] == after["DE"][1]  # rewritten in that transaction


def test_rows_with_the_same_key_are_refused(database: str) -> None:
    twice = PartitionWrite(catalog.FUNNEL, DAY, {"funnel_daily": funnel_rows(DAY, ["DE", "DE"])}, lake_version=2)
    with psycopg.connect(database, autocommit=True) as conn:
        with pytest.raises(ValueError, match="funnel_daily: 1 key"):
            replace_partition(conn, twice)  # first write of the partition
        replace_partition(conn, PartitionWrite(catalog.FUNNEL, DAY, {"funnel_daily": funnel_rows(DAY, ["FR"])}, 1))
        with pytest.raises(ValueError, match="funnel_daily: 1 key"):
            replace_partition(conn, twice)  # a rewrite
    assert fetch(database, "SELECT country FROM analytics.funnel_daily") == [("FR",)]
