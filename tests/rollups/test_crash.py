"""kill -9 of PostgreSQL in the middle of a partition replace: after recovery each partition is fully
old or fully new, and its ledger row agrees with its rows."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import shutil
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import psycopg
import pytest

from shoppulse.rollups import catalog
from shoppulse.rollups.writer import PartitionWrite, replace_partition
from shoppulse.settings import Settings
from shoppulse.stack.postgres import LocalPostgres
from shoppulse.stack.processes import child_pids, free_port
from shoppulse.warehouse.db import migrate

DAY = dt.date(2025, 3, 10)
NEIGHBOUR = dt.date(2025, 3, 11)
BIG_ROWS = 1_500_000


@pytest.fixture
def private_postgres(tmp_path: Path) -> Iterator[tuple[LocalPostgres, str]]:
    """A PostgreSQL cluster of this test only (own data dir and port), removed afterwards."""
    settings = Settings(
        home=tmp_path / "home",
        database_url_override=None,
        dagster_database_url_override=None,
        kafka_bootstrap_servers=None,
        pg_port=free_port(),
    )
    cluster = LocalPostgres(settings)
    cluster.start()
    try:
        yield cluster, settings.database_url
    finally:
        cluster.stop()
        shutil.rmtree(cluster.base, ignore_errors=True)


def products_tables(day: dt.date, rows: int, marker: int) -> dict[str, pl.DataFrame]:
    """Rows for every products table; `marker` is in every row's `units`, to tell old from new."""
    hours = pl.datetime_range(
        dt.datetime.combine(day, dt.time(), dt.UTC), dt.datetime.combine(day, dt.time(23), dt.UTC), "1h", eager=True
    ).dt.cast_time_unit("ms")
    products = max(rows // len(hours), 1)
    hourly = (
        pl.DataFrame({"hour_start": hours})
        .join(pl.DataFrame({"product_id": [f"p{i:07d}" for i in range(products)]}), how="cross")
        .with_columns(event_date=pl.lit(day), category=pl.lit("c"), currency=pl.lit("USD"))
    )
    measures = {m: pl.lit(marker, pl.Int64) for m in ("orders", "units", "gross_sales", "discounts", "returns")}
    hourly = hourly.with_columns(**measures, net_sales=pl.lit(-marker, pl.Int64))
    daily = hourly.group_by("event_date", "product_id", "category", "currency").agg(
        pl.col(list(measures)).first(), pl.col("net_sales").first()
    )
    categories = daily.head(1).drop("product_id")
    buckets = hourly.head(1).rename({"hour_start": "bucket_start"}).drop("product_id")
    buckets = buckets.with_columns(country=pl.lit("US"), channel=pl.lit("direct"), device=pl.lit("mobile"))
    return {
        "product_sales_hourly": hourly,
        "product_sales_daily": daily,
        "category_sales_daily": categories,
        "category_sales_15m": buckets,
    }


def state(url: str, day: dt.date) -> tuple[set[int], int, int | None]:
    """(distinct `units` markers in the partition's rows, row count, ledger lake_version)."""
    with psycopg.connect(url) as conn:
        markers = {
            r[0]
            for r in conn.execute(
                "SELECT DISTINCT units FROM analytics.product_sales_hourly WHERE event_date = %s", (day,)
            ).fetchall()
        }
        rows = conn.execute("SELECT count(*) FROM analytics.product_sales_hourly WHERE event_date = %s", (day,))
        count = rows.fetchone()[0]  # type: ignore[index]
        ledger = conn.execute(
            "SELECT lake_version FROM analytics.materializations WHERE asset = 'products' AND partition_date = %s",
            (day,),
        ).fetchone()
    return markers, count, None if ledger is None else ledger[0]


def kill_cluster(postmaster: int) -> None:
    """SIGKILL the postmaster and every backend: no shutdown, no checkpoint (like a power cut for PG)."""
    children = child_pids(postmaster)
    for pid in [postmaster, *children]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while any(Path(f"/proc/{pid}").exists() for pid in [postmaster, *children]):
        assert time.monotonic() < deadline, "killed PostgreSQL processes did not go away"
        time.sleep(0.05)


def wait_for_copy_in_progress(url: str, timeout: float = 60.0) -> int:
    deadline = time.monotonic() + timeout
    with psycopg.connect(url, autocommit=True) as conn:
        while time.monotonic() < deadline:
            row = conn.execute("SELECT max(tuples_processed) FROM pg_stat_progress_copy").fetchone()
            if row and row[0] and row[0] > 50_000:
                return int(row[0])
            time.sleep(0.02)
    raise AssertionError("the COPY never got going")


def write(conn: psycopg.Connection, day: dt.date, rows: int, marker: int) -> None:
    replace_partition(conn, PartitionWrite(catalog.PRODUCTS, day, products_tables(day, rows, marker), marker))


@pytest.mark.timeout(300)
def test_kill_postgres_mid_write_leaves_each_partition_old_or_new(private_postgres: tuple[LocalPostgres, str]) -> None:
    cluster, url = private_postgres
    migrate(url)
    with psycopg.connect(url, autocommit=True) as conn:
        write(conn, DAY, 2_400, marker=1)
        write(conn, NEIGHBOUR, 2_400, marker=1)
    old = state(url, DAY)
    assert old == ({1}, 2_400, 1)

    failure: list[BaseException] = []

    def big_replace() -> None:
        try:
            with psycopg.connect(url, autocommit=True) as conn:
                write(conn, DAY, BIG_ROWS, marker=2)
        except BaseException as exc:  # the server dies under it
            failure.append(exc)

    writer = threading.Thread(target=big_replace)
    writer.start()
    copied = wait_for_copy_in_progress(url)
    postmaster = cluster.running_pid()
    assert postmaster is not None
    kill_cluster(postmaster)
    writer.join(timeout=120)
    assert not writer.is_alive()
    assert failure and isinstance(failure[0], psycopg.OperationalError), failure
    assert 0 < copied < BIG_ROWS

    cluster.start()  # crash recovery replays the WAL
    assert state(url, DAY) == old  # fully old: rows and ledger of the first write
    assert state(url, NEIGHBOUR) == old

    with psycopg.connect(url, autocommit=True) as conn:  # the rerun after recovery lands fully new
        write(conn, DAY, 24_000, marker=2)
    assert state(url, DAY) == ({2}, 24_000, 2)
    assert state(url, NEIGHBOUR) == old
