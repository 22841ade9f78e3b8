"""Backfill on the Celery run launcher: wall time with one worker vs two, measured in the same run.

    uv run python bench/celery_backfill.py [--days 8] [--events-per-day 100000] [--rounds 1]

1. Builds (or reuses) the synthetic lake of bench/backfill.py and starts a Redis (Debian's redis-server)
   on a free port.
2. For 1 worker, then 2 workers (each a Celery worker with a prefork pool of one process, as
   `SHOPPULSE_RUN_LAUNCHER=celery` starts them): fresh analytics and Dagster databases, the workers,
   then `dagster job backfill` of the rollups job over the days: one run per day, each sent to Redis by
   dagster-celery's `CeleryRunLauncher` and executed by whichever worker is free (in-process executor).
3. Prints, per configuration: wall time from the backfill command to the last run's end (the command
   itself loads the code location and creates the runs first), the span of the runs (first start to last
   end), runs per worker; and the ratios one worker / two workers of both.

Both workers share this machine's CPUs with everything else: the ratio shows what a second worker buys
here; on separate hosts each worker brings its own cores.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import psycopg
import yaml
from psycopg import sql

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dagster import DagsterInstance, DagsterRunStatus, RunsFilter  # noqa: E402

from assets.jobs import ROLLUPS_JOB_NAME  # noqa: E402
from bench.backfill import build_lake  # noqa: E402
from shoppulse.settings import Settings, get_settings  # noqa: E402
from shoppulse.stack import celery  # noqa: E402
from shoppulse.stack.processes import free_port, port_is_open, stop_pid, wait_until  # noqa: E402
from shoppulse.warehouse.db import migrate, with_database  # noqa: E402

FINISHED = {DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED}


@contextlib.contextmanager
def redis_server(directory: Path) -> Iterator[str]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server not found: apt-get install redis-server")
    port = free_port()
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", str(directory)],
        stdout=subprocess.DEVNULL,
    )
    try:
        if not wait_until(lambda: port_is_open(port), 30):
            raise SystemExit("redis-server did not start")
        yield f"redis://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait()


@contextlib.contextmanager
def scratch_databases(server_url: str) -> Iterator[tuple[str, str]]:
    names = [f"bench_celery_{uuid.uuid4().hex[:8]}", f"bench_celery_dagster_{uuid.uuid4().hex[:8]}"]
    with psycopg.connect(server_url, autocommit=True) as conn:
        for name in names:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield with_database(server_url, names[0]), with_database(server_url, names[1])
    finally:
        with psycopg.connect(server_url, autocommit=True) as conn:
            for name in names:
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def backfill(workers: int, lake: Path, days: list[dt.date], redis_url: str, scratch: Path) -> dict[str, object]:
    settings = get_settings()
    with scratch_databases(settings.database_url) as (analytics, dagster_db):
        migrate(analytics)
        home = scratch / f"dagster_home_{workers}"
        home.mkdir(parents=True)
        config = yaml.safe_load(celery.celery_instance_yaml(Settings(redis_url_override=redis_url)))
        config["run_coordinator"] = {"module": "dagster.core.run_coordinator", "class": "DefaultRunCoordinator"}
        (home / "dagster.yaml").write_text(yaml.safe_dump(config))
        env = {
            **os.environ,
            "SHOPPULSE_LAKE_DIR": str(lake),
            "DATABASE_URL": analytics,
            "DAGSTER_DATABASE_URL": dagster_db,
            "DAGSTER_HOME": str(home),
            "SHOPPULSE_REDIS_URL": redis_url,
            "KAFKA_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
            "SHOPPULSE_EVENTS_TOPIC": settings.events_topic,
        }
        (scratch / "logs").mkdir(exist_ok=True)
        processes = [
            subprocess.Popen(
                list(celery.worker_argv(f"w{n}", concurrency=1)),
                env=env,
                cwd=ROOT,
                stdout=open(scratch / "logs" / f"worker-{workers}-{n}.log", "wb"),  # noqa: SIM115 - closed with the process
                stderr=subprocess.STDOUT,
            )
            for n in range(1, workers + 1)
        ]
        try:
            began = time.time()
            command = [sys.executable, "-m", "dagster", "job", "backfill", "-m", "pipelines.definitions"]
            command += ["-j", ROLLUPS_JOB_NAME, "--partitions", ",".join(d.isoformat() for d in days), "--noprompt"]
            done = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, check=False)
            if done.returncode:
                raise SystemExit(f"backfill failed:\n{done.stderr[-3000:]}")
            os.environ["DAGSTER_HOME"], os.environ["DAGSTER_DATABASE_URL"] = str(home), dagster_db
            with DagsterInstance.get() as instance:
                while True:
                    runs = instance.get_runs(RunsFilter(job_name=ROLLUPS_JOB_NAME))
                    if len(runs) == len(days) and all(run.status in FINISHED for run in runs):
                        break
                    time.sleep(0.5)
                stats = [instance.get_run_stats(run.run_id) for run in runs]
                hosts = Counter(
                    instance.run_launcher.celery.AsyncResult(run.tags["dagster-celery/task_id"]).worker.split("@")[0]
                    for run in runs
                )
                failed = [run.run_id for run in runs if run.status != DagsterRunStatus.SUCCESS]
        finally:
            for process in processes:
                stop_pid(process.pid, 60)
                process.wait()
    ended = max(stat.end_time or 0.0 for stat in stats)
    started = min(stat.start_time or ended for stat in stats)
    return {
        "workers": workers,
        "wall": ended - began,
        "span": ended - started,
        "runs": len(runs),
        "hosts": dict(sorted(hosts.items())),
        "failed": failed,
        "mean_run": sum((s.end_time or 0) - (s.start_time or 0) for s in stats) / len(stats),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--days", type=int, default=8)
    parser.add_argument("--events-per-day", type=int, default=100_000)
    parser.add_argument("--start", type=dt.date.fromisoformat, default=dt.date(2025, 4, 1))
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=1, help="alternate (1 worker, 2 workers) this many times")
    args = parser.parse_args()

    settings = get_settings()
    days = [args.start + dt.timedelta(days=i) for i in range(args.days)]
    lake = settings.home / "bench" / f"backfill-{args.days}x{args.events_per_day}-s{args.seed}"
    lake.mkdir(parents=True, exist_ok=True)
    print(f"lake {lake}: building or reusing {args.days} days × {args.events_per_day:,} events", flush=True)
    build_lake(lake, days, args.events_per_day, args.seed)
    results: dict[int, list[dict[str, object]]] = {1: [], 2: []}
    with tempfile.TemporaryDirectory() as scratch, redis_server(Path(scratch)) as redis_url:
        for round_number in range(1, args.rounds + 1):
            for workers in (1, 2):
                result = backfill(workers, lake, days, redis_url, Path(scratch) / f"r{round_number}")
                results[workers].append(result)
                print(
                    f"{round_number}: {workers} worker(s): wall {result['wall']:.1f}s, "
                    f"runs span {result['span']:.1f}s, "
                    f"{result['runs']} runs (mean {result['mean_run']:.1f}s) by {result['hosts']}"
                    + (f", FAILED {result['failed']}" if result["failed"] else ""),
                    flush=True,
                )
    one = min(float(r["wall"]) for r in results[1])  # type: ignore[arg-type]
    two = min(float(r["wall"]) for r in results[2])  # type: ignore[arg-type]
    print(f"\nbackfill of {args.days} days: 1 worker {one:.1f}s, 2 workers {two:.1f}s (best of {args.rounds})")
    span_one = min(float(r["span"]) for r in results[1])  # type: ignore[arg-type]
    span_two = min(float(r["span"]) for r in results[2])  # type: ignore[arg-type]
    print(f"speed-up of the second worker (1 worker / 2 workers wall time): {one / two:.2f}")
    print(
        f"runs span (first run start to last end, without the command's start-up): 1 worker {span_one:.1f}s, "
        f"2 workers {span_two:.1f}s, ratio {span_one / span_two:.2f}"
    )
    print(f"load average now: {' '.join(f'{x:.1f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs")
    if any(r["failed"] for rs in results.values() for r in rs):
        raise SystemExit("some runs failed")


if __name__ == "__main__":
    main()
