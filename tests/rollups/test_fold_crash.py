"""kill -9 of the folding process, and of PostgreSQL, in the middle of a fold: state, serving rows and
ledger rows stay those of the previous fold, and the next fold lands exactly on the full recompute."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import polars as pl
import psycopg
import pytest

from shoppulse.lake.writer import append_events
from shoppulse.rollups import catalog
from shoppulse.rollups.checks import recompute_and_compare
from shoppulse.rollups.fx import rates_in_force
from shoppulse.rollups.incremental import fold_partition
from shoppulse.rollups.incremental.fold import read_header
from shoppulse.settings import PROJECT_ROOT
from shoppulse.stack.postgres import LocalPostgres
from shoppulse.warehouse.db import migrate
from tests.rollups import scenario
from tests.rollups.conftest import write_fx
from tests.rollups.test_crash import kill_cluster, private_postgres  # noqa: F401 - the fixture

DAY = dt.date(2025, 3, 10)
APP = "shoppulse-fold-crash"
FOLD_SCRIPT = """
import datetime as dt, sys
import psycopg
from shoppulse.rollups.fx import rates_in_force
from shoppulse.rollups.incremental import fold_partition
with psycopg.connect(sys.argv[2], autocommit=True, application_name=sys.argv[3]) as conn:
    fx = lambda d, c: rates_in_force(conn, d, c)
    fold_partition(sys.argv[1], conn, dt.date.fromisoformat(sys.argv[4]), fx, "USD")
"""


def many_events(count: int, prefix: str) -> pl.DataFrame:
    """`count` events of DAY over many users, sessions and minutes (a few orders among them)."""
    base = dt.datetime.combine(DAY, dt.time(), dt.UTC)
    rows = []
    for i in range(count):
        ts = base + dt.timedelta(seconds=(i * 7919) % 86_400)
        user, session = f"{prefix}u{i % 5000}", f"{prefix}s{i % 9000}"
        if i % 50 == 0:
            lines = [scenario.line(f"p{i % 40}", f"c{i % 5}", 1 + i % 3, 1000 + i % 700)]
            rows.append(scenario.order("order_placed", ts, user, session, f"{prefix}o{i}", "USD", lines, 100, 50, 1))
        else:
            rows.append(scenario.event("page_view", ts, user, session, country=("US", "DE")[i % 2]))
    return scenario.frame(rows)


def fold_transaction_open(url: str, application: str) -> bool:
    """The folding connection is inside its transaction and has written (it holds a transaction id)."""
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s AND backend_xid IS NOT NULL",
            (application,),
        ).fetchone()
    return bool(row and row[0])


def served_and_state(url: str) -> tuple:
    with psycopg.connect(url, autocommit=True) as conn:
        header = read_header(conn, DAY)
        ledger = conn.execute(
            "SELECT asset, lake_version, row_count FROM analytics.materializations"
            " WHERE partition_date = %s ORDER BY 1",
            (DAY,),
        ).fetchall()
        sales = conn.execute("SELECT orders, gross_sales FROM analytics.sales_daily WHERE event_date = %s", (DAY,))
        return header and header["lake_version"], ledger, sales.fetchall()


def assert_matches_recompute(lake: Path, url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        results = recompute_and_compare(lake, conn, catalog.EVENT_ROLLUPS, DAY, "USD")
    assert [(r.asset, r.comparable, r.differing_tables) for r in results] == [
        (asset, True, {}) for asset in catalog.EVENT_ROLLUPS
    ]


def fold_here(lake: Path, url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        fold_partition(lake, conn, DAY, lambda d, c: rates_in_force(conn, d, c), "USD")


@pytest.mark.timeout(300)
def test_kill_the_folding_process_mid_fold(tmp_path: Path, database: str) -> None:
    lake = tmp_path / "lake"
    write_fx(database, [DAY])
    append_events(lake, many_events(2_000, "a"))
    fold_here(lake, database)
    before = served_and_state(database)
    append_events(lake, many_events(120_000, "b"))
    worker = subprocess.Popen(
        [sys.executable, "-c", FOLD_SCRIPT, str(lake), database, APP, DAY.isoformat()], cwd=PROJECT_ROOT
    )
    deadline = time.monotonic() + 240
    while not fold_transaction_open(database, APP):
        assert worker.poll() is None, "the fold finished before it could be killed"
        assert time.monotonic() < deadline, "the fold never opened its transaction"
        time.sleep(0.01)
    os.kill(worker.pid, signal.SIGKILL)
    assert worker.wait(timeout=30) == -signal.SIGKILL
    while fold_transaction_open(database, APP):  # the server notices the dead client and rolls back
        time.sleep(0.05)
    assert served_and_state(database) == before  # old state, old rows, old ledger: all of them
    fold_here(lake, database)
    assert served_and_state(database)[0] != before[0]
    assert_matches_recompute(lake, database)


@pytest.mark.timeout(300)
def test_kill_postgres_mid_fold(tmp_path: Path, private_postgres: tuple[LocalPostgres, str]) -> None:  # noqa: F811
    cluster, url = private_postgres
    migrate(url)
    lake = tmp_path / "lake"
    write_fx(url, [DAY])
    append_events(lake, many_events(2_000, "a"))
    fold_here(lake, url)
    before = served_and_state(url)
    append_events(lake, many_events(120_000, "b"))
    failure: list[BaseException] = []

    def fold_in_thread() -> None:
        try:
            with psycopg.connect(url, autocommit=True, application_name=APP) as conn:
                fold_partition(lake, conn, DAY, lambda d, c: rates_in_force(conn, d, c), "USD")
        except BaseException as exc:  # the server dies under it
            failure.append(exc)

    folding = threading.Thread(target=fold_in_thread)
    folding.start()
    deadline = time.monotonic() + 240
    while not fold_transaction_open(url, APP):
        assert folding.is_alive(), f"the fold ended before PostgreSQL could be killed: {failure}"
        assert time.monotonic() < deadline
        time.sleep(0.01)
    postmaster = cluster.running_pid()
    assert postmaster is not None
    kill_cluster(postmaster)
    folding.join(timeout=120)
    assert failure and isinstance(failure[0], psycopg.OperationalError), failure
    cluster.start()  # crash recovery
    assert served_and_state(url) == before
    fold_here(lake, url)
    assert_matches_recompute(lake, url)
