"""A backfill on the optional Celery run launcher: its runs spread over two local Celery workers (real
Redis from Debian, real Kafka, PostgreSQL and lake), and the served numbers equal the simulator's
ground truth, exactly as with the default launcher."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest
import yaml
from dagster import DagsterInstance, DagsterRunStatus, RunsFilter

from assets.jobs import ROLLUPS_JOB_NAME
from shoppulse.lake.drain import DrainConfig, drain
from shoppulse.settings import PROJECT_ROOT, Settings
from shoppulse.stack import celery
from shoppulse.stack.processes import free_port, port_is_open, stop_pid, wait_until
from shoppulse.warehouse.db import migrate

REDIS = shutil.which("redis-server")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(REDIS is None, reason="redis-server not installed (make test installs it as root)"),
]
SALES = ("orders", "units", "gross_sales", "discounts", "returns", "net_sales", "shipping", "taxes", "total_sales")
FINISHED = {DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED}


@pytest.fixture
def celery_env(stack, settings: Settings, kafka_topic, pg_database, tmp_path: Path):
    """Redis on a free port, a lake with 3 days of simulated history, fresh databases, a Celery instance."""
    redis_port = free_port()
    redis = subprocess.Popen(
        [REDIS, "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "", "--dir", str(tmp_path)],  # type: ignore[list-item]
        stdout=subprocess.DEVNULL,
    )
    assert wait_until(lambda: port_is_open(redis_port), 30)
    topic = kafka_topic("celery", partitions=3)
    truth_path = tmp_path / "truth.json"
    subprocess.run(
        [sys.executable, "-m", "simulator", "history", "--days", "3", "--events-per-day", "500",
         "--end", "2026-06-05", "--seed", "17", "--topic", topic, "--bootstrap-servers", settings.bootstrap_servers,
         "--ground-truth", str(truth_path), "--no-progress"],
        check=True, cwd=PROJECT_ROOT, capture_output=True,
    )  # fmt: skip
    lake = tmp_path / "lake"
    config = DrainConfig(bootstrap_servers=settings.bootstrap_servers, topic=topic, lake_dir=lake, max_seconds=30)
    while drain(config).lag:
        pass
    analytics, dagster_db = pg_database(), pg_database()
    migrate(analytics)
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
        "SHOPPULSE_EVENTS_TOPIC": topic,
        "SHOPPULSE_LAKE_DIR": str(lake),
        "SHOPPULSE_LAKE_URI": str(lake),
        "DATABASE_URL": analytics,
        "DAGSTER_DATABASE_URL": dagster_db,
        "DAGSTER_HOME": str(tmp_path / "dagster_home"),
        "SHOPPULSE_RUN_LAUNCHER": "celery",
        "SHOPPULSE_REDIS_URL": f"redis://127.0.0.1:{redis_port}",
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics"),
    }
    test_settings = Settings(redis_url_override=env["SHOPPULSE_REDIS_URL"])
    instance_config = yaml.safe_load(celery.celery_instance_yaml(test_settings))
    # No daemon here: the backfill command launches its runs directly on the Celery launcher.
    instance_config["run_coordinator"] = {"module": "dagster.core.run_coordinator", "class": "DefaultRunCoordinator"}
    Path(env["DAGSTER_HOME"]).mkdir()
    (Path(env["DAGSTER_HOME"]) / "dagster.yaml").write_text(yaml.safe_dump(instance_config))
    yield {"env": env, "truth": json.loads(truth_path.read_text()), "tmp": tmp_path, "settings": test_settings}
    redis.terminate()
    redis.wait()


def start_workers(env: dict[str, str], count: int, log_dir: Path) -> list[subprocess.Popen]:
    workers = []
    for number in range(1, count + 1):
        with open(log_dir / f"worker-{number}.log", "wb") as log:
            workers.append(
                subprocess.Popen(
                    list(celery.worker_argv(f"w{number}", concurrency=1)),
                    env=env,
                    cwd=PROJECT_ROOT,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
    return workers


def test_a_backfill_spreads_over_two_celery_workers_and_serves_the_truth(
    celery_env, monkeypatch: pytest.MonkeyPatch
) -> None:
    env, truth = celery_env["env"], celery_env["truth"]
    days = sorted(truth["days"])
    workers = start_workers(env, 2, celery_env["tmp"])
    try:
        backfill = subprocess.run(
            [sys.executable, "-m", "dagster", "job", "backfill", "-m", "pipelines.definitions", "-j", ROLLUPS_JOB_NAME,
             "--partitions", ",".join(days), "--noprompt"],
            check=False, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True,
        )  # fmt: skip
        assert backfill.returncode == 0, backfill.stderr[-3000:]
        for key in ("DAGSTER_HOME", "DAGSTER_DATABASE_URL"):
            monkeypatch.setenv(key, env[key])
        with DagsterInstance.get() as instance:
            runs_filter = RunsFilter(job_name=ROLLUPS_JOB_NAME)

            def finished() -> bool:
                runs = instance.get_runs(runs_filter)
                return len(runs) == len(days) and all(run.status in FINISHED for run in runs)

            deadline = time.monotonic() + 600
            while not finished():
                assert all(w.poll() is None for w in workers), "a Celery worker exited"
                assert time.monotonic() < deadline, [r.status for r in instance.get_runs(runs_filter)]
                time.sleep(1)
            runs = instance.get_runs(runs_filter)
            assert sorted(run.tags["dagster/partition"] for run in runs) == days
            assert {run.status for run in runs} == {DagsterRunStatus.SUCCESS}
            task_ids = [run.tags["dagster-celery/task_id"] for run in runs]
            run_launcher = instance.run_launcher
            hosts = {run_launcher.celery.AsyncResult(task_id).worker.split("@")[0] for task_id in task_ids}
            assert hosts == {"w1", "w2"}
    finally:
        for worker in workers:
            stop_pid(worker.pid, 60)
            worker.wait()

    with psycopg.connect(env["DATABASE_URL"]) as conn:
        ledger = conn.execute(
            "SELECT asset, count(*) FROM analytics.materializations GROUP BY asset ORDER BY asset"
        ).fetchall()
        assert {asset: n for asset, n in ledger if asset != "ingest_quality"} == {
            asset: len(days) for asset in ("customers", "funnel", "fx_rates", "products", "sales", "users")
        }
        rows = conn.execute(
            f"SELECT event_date::text, currency, {', '.join(SALES)} FROM analytics.sales_daily"
        ).fetchall()
    served = {(day, currency.strip()): dict(zip(SALES, values, strict=True)) for day, currency, *values in rows}
    expected = {
        (day, currency): {k: sales[k] for k in SALES}
        for day in days
        for currency, sales in truth["days"][day]["sales"].items()
        if any(sales[k] for k in SALES)  # a currency without sales that day has no row
    }
    assert served == expected
