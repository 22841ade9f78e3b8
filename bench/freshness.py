"""Freshness benchmark: event produced -> visible in the PostgreSQL serving table, with the daemon running.

    uv run python bench/freshness.py [--rate 1000] [--minutes 3]

Starts the whole stack the way `make run` does (its own SHOPPULSE_HOME, free ports, a fresh topic and
fresh databases on the local broker and server), runs the live simulator at --rate events/s, and polls
the ledger row of today's `sales` partition every 100 ms. An event produced at time p is visible from
the first poll at which the partition's data watermark (newest event_ts included) is >= p; the
latency of every produced-millisecond sample p is that poll time minus p. Prints p50/p95/p99, plus
the same quantiles of the drain alone (lake commit time from the sensor's raw_events reports) as
the in-run baseline that the rollup hop adds to.
"""

from __future__ import annotations

import argparse
import datetime as dt
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
import psycopg
from psycopg import sql

from shoppulse.lake import table_version
from shoppulse.settings import PROJECT_ROOT, get_settings
from shoppulse.stack import services
from shoppulse.stack.isolated import start_isolated_run
from shoppulse.stack.kafka import ensure_topic
from shoppulse.warehouse.db import with_database

WARMUP_SECONDS = 30


def poll_watermarks(database_url: str, lake: Path | None, seconds: float) -> tuple[list[tuple[float, float]], list]:
    """(poll time, sales watermark) and (poll time, newest lake commit time) samples, epoch seconds
    (`lake` None: serving only; opening a big lake's log ten times a second would load the machine)."""
    serving: list[tuple[float, float]] = []
    lake_commits: list[tuple[float, float]] = []
    seen_seq = 0
    end = time.time() + seconds
    with psycopg.connect(database_url, autocommit=True) as conn:
        while time.time() < end:
            now = time.time()
            row = conn.execute(
                "SELECT max_event_ts FROM analytics.materializations WHERE asset = 'sales' AND partition_date = %s",
                (dt.datetime.now(dt.UTC).date(),),
            ).fetchone()
            if row and row[0] is not None:
                serving.append((now, row[0].timestamp()))
            seq = table_version(lake) if lake is not None else 0
            if seq > seen_seq:
                seen_seq = seq
                lake_commits.append((now, seq))
            time.sleep(0.1)
    return serving, lake_commits


def visibility_latencies(samples: list[tuple[float, float]], start: float, end: float) -> np.ndarray:
    """For each produced-time p in [start, end) (every 10 ms): first poll time whose watermark >= p, minus p."""
    polls = np.array([t for t, _ in samples])
    marks = np.maximum.accumulate(np.array([w for _, w in samples]))
    produced = np.arange(start, end, 0.01)
    index = np.searchsorted(marks, produced, side="left")
    visible = index < len(polls)
    return polls[index[visible]] - produced[visible]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=1000.0, help="live simulator events/s")
    parser.add_argument("--minutes", type=float, default=3.0, help="measured minutes (after a 30 s warm-up)")
    args = parser.parse_args()

    settings = get_settings()
    services.up(settings)
    topic = f"bench.freshness.{uuid.uuid4().hex[:8]}"
    databases = [f"bench_fresh_{uuid.uuid4().hex[:8]}", f"bench_fresh_dagster_{uuid.uuid4().hex[:8]}"]
    ensure_topic(settings.bootstrap_servers, topic, settings.events_topic_partitions)
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        for name in databases:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    home = Path(tempfile.mkdtemp(prefix="bench-freshness-")) / "home"
    database_url = with_database(settings.database_url, databases[0])
    run = start_isolated_run(
        home,
        home.parent / "run.log",
        {
            "KAFKA_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
            "SHOPPULSE_EVENTS_TOPIC": topic,
            "DATABASE_URL": database_url,
            "DAGSTER_DATABASE_URL": with_database(settings.database_url, databases[1]),
        },
        timeout=300,
    )
    simulator = None
    try:
        measured = args.minutes * 60
        simulator = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "simulator",
                "live",
                "--rate",
                str(args.rate),
                "--duration",
                str(WARMUP_SECONDS + measured + 5),
                "--topic",
                topic,
                "--bootstrap-servers",
                settings.bootstrap_servers,
                "--seed",
                "7",
                "--no-progress",
            ],
            env=run.env,
            cwd=PROJECT_ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        print(
            f"stack up; simulator live at {args.rate:.0f} events/s; warming up {WARMUP_SECONDS}s, "
            f"measuring {measured:.0f}s ...",
            flush=True,
        )
        time.sleep(WARMUP_SECONDS)
        start = time.time()
        serving, lake_commits = poll_watermarks(database_url, home / "lake", measured + 20)
        end = start + measured
    finally:
        if simulator is not None and simulator.poll() is None:
            simulator.send_signal(signal.SIGTERM)
            simulator.wait(30)
        run.proc.send_signal(signal.SIGINT)
        run.proc.wait(120)
        with psycopg.connect(settings.database_url, autocommit=True) as conn:
            for name in databases:
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))

    latencies = visibility_latencies(serving, start, end)
    runs = len({w for _, w in serving})
    p50, p95, p99 = np.percentile(latencies, [50, 95, 99])
    gaps = np.diff([t for t, _ in lake_commits]) if len(lake_commits) > 1 else np.array([float("nan")])
    print()
    print(
        f"rate {args.rate:.0f} events/s for {measured:.0f}s; {runs} distinct serving watermarks; "
        f"{len(lake_commits)} lake commits (median {np.median(gaps):.1f}s apart)"
    )
    print(
        f"produced -> visible in analytics.sales_* : p50 {p50:.1f}s  p95 {p95:.1f}s  p99 {p99:.1f}s  "
        f"(target p95 <= 10s)"
    )
    print(
        f"lake commit cadence (drain alone)       : p50 {np.percentile(gaps, 50):.1f}s  "
        f"p95 {np.percentile(gaps, 95):.1f}s"
    )
    print(f"serving latency / drain cadence (p50)    : {p50 / np.percentile(gaps, 50):.2f}x")


if __name__ == "__main__":
    main()
