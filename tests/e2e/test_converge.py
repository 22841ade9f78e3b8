"""Converge without a human: a rollup run of a past day (late data) is killed with kill -9 right after its
first serving write, and that day's numbers still end up equal to the ground truth, with no manual step.

The stack is `python -m shoppulse.stack run --no-simulator` on its own home, topic and databases (see
test_pipeline.py). Two days of history are sent and rolled up first; then a burst of late events for
yesterday alone is sent, so exactly one drain commit, hence one run, covers yesterday's new data: nothing
but run retries (or the reconciler) can repair it once that run is killed.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psycopg
import pytest

from shoppulse.rollups import catalog
from shoppulse.rollups.checks import recompute_and_compare
from shoppulse.settings import PROJECT_ROOT, Settings
from tests.e2e.test_pipeline import SALES, isolated_run  # noqa: F401 - the fixture

pytestmark = pytest.mark.slow


def simulate(command: str, env: dict[str, str], topic: str, servers: str, truth: Path, *args: str) -> dict:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "simulator",
            command,
            *args,
            "--duplicate-rate",
            "0.02",
            "--out-of-order-rate",
            "0.02",
            "--topic",
            topic,
            "--bootstrap-servers",
            servers,
            "--ground-truth",
            str(truth),
            "--no-progress",
        ],
        check=True,
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
    )
    return json.loads(truth.read_text())


def sales_truth(*truths: dict) -> dict[tuple[str, str], dict[str, int]]:
    """(day, currency) -> sales measures, summed over the truths (sales add up across disjoint orders)."""
    total: dict[tuple[str, str], dict[str, int]] = {}
    for truth in truths:
        for day, values in truth["days"].items():
            for currency, measures in values["sales"].items():
                row = total.setdefault((day, currency), dict.fromkeys(SALES, 0))
                for k in SALES:
                    row[k] += measures[k]
    return total


class RunKiller(threading.Thread):
    """Kill -9 the worker of the first rollups run of `partition` created after start, as soon as that run
    has written its first partition to the serving ledger."""

    def __init__(self, dagster_url: str, serving_url: str, partition: str, after: float) -> None:
        super().__init__(daemon=True)
        self.dagster_url, self.serving_url, self.partition, self.after = dagster_url, serving_url, partition, after
        self.killed_run: str | None = None
        self.killed_pid: int | None = None
        self.stop = threading.Event()

    def _candidate(self, dagster: psycopg.Connection) -> tuple[str, int] | None:
        row = dagster.execute(
            """SELECT r.run_id, pid.value FROM runs r
               JOIN run_tags part ON part.run_id = r.run_id AND part.key = 'dagster/partition' AND part.value = %s
               JOIN run_tags pid ON pid.run_id = r.run_id AND pid.key = 'shoppulse/run_worker_pid'
               WHERE r.pipeline_name = 'rollups' AND r.create_timestamp > to_timestamp(%s) AT TIME ZONE 'UTC'
               ORDER BY r.create_timestamp LIMIT 1""",
            (self.partition, self.after),
        ).fetchone()
        return None if row is None else (row[0], int(row[1]))

    def run(self) -> None:
        with (
            psycopg.connect(self.dagster_url, autocommit=True) as dagster,
            psycopg.connect(self.serving_url, autocommit=True) as serving,
        ):
            while not self.stop.is_set():
                found = self._candidate(dagster)
                if found is not None:
                    run_id, pid = found
                    written = serving.execute(
                        "SELECT count(*) FROM analytics.materializations WHERE run_id = %s", (run_id,)
                    ).fetchone()[0]  # type: ignore[index]
                    if written:
                        with contextlib.suppress(ProcessLookupError):
                            os.kill(pid, signal.SIGKILL)
                            self.killed_run, self.killed_pid = run_id, pid
                        return
                time.sleep(0.005)


def run_status(dagster_url: str, run_id: str) -> str:
    with psycopg.connect(dagster_url) as conn:
        return conn.execute("SELECT status FROM runs WHERE run_id = %s", (run_id,)).fetchone()[0]  # type: ignore[index]


def retries_of(dagster_url: str, run_id: str) -> list[str]:
    """Statuses of the runs Dagster's run-retry daemon launched for `run_id`."""
    with psycopg.connect(dagster_url) as conn:
        rows = conn.execute(
            """SELECT r.status FROM runs r JOIN run_tags t ON t.run_id = r.run_id
               WHERE t.key = 'dagster/parent_run_id' AND t.value = %s""",
            (run_id,),
        ).fetchall()
    return [row[0] for row in rows]


def test_killed_past_day_run_converges_to_the_truth(isolated_run, settings: Settings, tmp_path: Path) -> None:  # noqa: F811
    env, topic, servers = isolated_run["env"], isolated_run["topic"], settings.bootstrap_servers
    history = simulate(
        "history", env, topic, servers, tmp_path / "history.json", "--days", "2", "--events-per-day", "3000",
        "--seed", "7",
    )  # fmt: skip

    def served(expected: dict) -> dict:
        """The serving rows the API answers day totals from (read directly: no API rate limit in the loop)."""
        with psycopg.connect(env["DATABASE_URL"]) as conn:
            columns = ", ".join(SALES)
            rows = conn.execute(f"SELECT event_date::text, trim(currency), {columns} FROM analytics.sales_daily")
            found = {(r[0], r[1]): dict(zip(SALES, r[2:], strict=True)) for r in rows.fetchall()}
        return {key: found.get(key, dict.fromkeys(SALES, 0)) for key in expected}  # the API answers zeros

    def wait_for(expected: dict, seconds: float) -> dict:
        deadline = time.monotonic() + seconds
        while (actual := served(expected)) != expected and time.monotonic() < deadline:
            time.sleep(3)
        return actual

    expected = sales_truth(history)
    assert wait_for(expected, 240) == expected

    yesterday = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1)
    killer = RunKiller(env["DAGSTER_DATABASE_URL"], env["DATABASE_URL"], yesterday.isoformat(), time.time())
    killer.start()
    late = simulate(
        "burst", env, topic, servers, tmp_path / "late.json", "--events", "20000", "--days", "0.2",
        "--end", f"{yesterday.isoformat()}T20:00:00+00:00", "--seed", "8",
    )  # fmt: skip
    assert set(late["days"]) == {yesterday.isoformat()}
    killer.join(timeout=180)
    killer.stop.set()
    assert killer.killed_run is not None, "no rollups run of yesterday was caught after its first write"

    expected = sales_truth(history, late)
    assert wait_for(expected, 300) == expected  # no manual step: run retries / the reconciler caught it up
    assert run_status(env["DAGSTER_DATABASE_URL"], killer.killed_run) == "FAILURE"
    deadline = time.monotonic() + 120
    while "SUCCESS" not in (retried := retries_of(env["DAGSTER_DATABASE_URL"], killer.killed_run)):
        if time.monotonic() > deadline:
            break
        time.sleep(2)
    assert "SUCCESS" in retried  # Dagster's run retries re-executed the killed run

    lake = isolated_run["home"] / "lake"
    with psycopg.connect(env["DATABASE_URL"], autocommit=True) as conn:
        results = recompute_and_compare(lake, conn, catalog.EVENT_ROLLUPS, yesterday, settings.reporting_currency)
    assert all(r.comparable and r.matches for r in results), results
