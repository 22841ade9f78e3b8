"""Freshness when today is already big: produced -> visible with N events preloaded into today, against an
empty day in the same run.

    uv run python bench/freshness_at_volume.py [--preload 10000000 50000000] [--rate 1000] [--minutes 2]
        [--keep DIR | --reuse DIR]

For each case (an empty day first, then each --preload size) the script starts the whole stack the way
`make run` does (own SHOPPULSE_HOME, free ports, fresh topic and databases), preloads today's partition
with `python -m simulator burst --events N --days <the part of today already past>`, waits until the lake
holds it and today's rollups caught up with it, then runs the live simulator at --rate events/s and
measures, as bench/freshness.py does, produced -> visible in the serving tables (p50/p95/p99), plus each
rollup run worker's CPU seconds and peak RSS (sampled from /proc every 50 ms: a run shorter than that is
missed, and CPU is a lower bound by up to one sample). Prints one table and the loaded/empty ratios.

A 50M-event preload takes over an hour. `--keep DIR` leaves the last preloaded case's state in place (its
home, topic and two databases, named in DIR/kept.json) instead of deleting it; `--reuse DIR` then measures
the current code on that state (after an empty day, as always) without preloading again, and keeps it
again. The state belongs to its UTC day: live traffic after midnight would land in another partition.
Delete it with `--drop DIR`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import psycopg
from confluent_kafka.admin import AdminClient
from freshness import poll_watermarks, visibility_latencies

from shoppulse.lake.layout import LakeTable, read_partition
from shoppulse.rollups.incremental.fold import state_bytes
from shoppulse.rollups.reconcile import lake_partition_versions
from shoppulse.settings import PROJECT_ROOT, get_settings
from shoppulse.stack import services
from shoppulse.stack.isolated import IsolatedRun, drop_databases, isolated_stack_databases, start_isolated_run
from shoppulse.stack.kafka import ensure_topic

WARMUP_SECONDS = 30
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class WorkerSamples:
    """Per run worker pid: the newest CPU seconds and peak RSS seen in /proc."""

    cpu: dict[int, float] = field(default_factory=dict)
    peak_rss_mb: dict[int, float] = field(default_factory=dict)

    def sample(self, pid: int) -> None:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            status = Path(f"/proc/{pid}/status").read_text()
        except (FileNotFoundError, ProcessLookupError, IndexError):
            return
        self.cpu[pid] = (int(stat[11]) + int(stat[12])) / CLOCK_TICKS
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                self.peak_rss_mb[pid] = int(line.split()[1]) / 1024


def watch_run_workers(dagster_url: str, since: float, stop: threading.Event, samples: WorkerSamples) -> None:
    """Sample every rollups run worker started after `since` until `stop`."""
    with psycopg.connect(dagster_url, autocommit=True) as conn:
        pids: set[int] = set()
        last_query = 0.0
        while not stop.is_set():
            if time.time() - last_query > 0.5:
                rows = conn.execute(
                    """SELECT t.value FROM runs r JOIN run_tags t ON t.run_id = r.run_id
                       WHERE t.key = 'shoppulse/run_worker_pid' AND r.pipeline_name = 'rollups'
                         AND r.create_timestamp > to_timestamp(%s) AT TIME ZONE 'UTC'""",
                    (since,),
                ).fetchall()
                pids |= {int(value) for (value,) in rows}
                last_query = time.time()
            for pid in list(pids):
                if Path(f"/proc/{pid}").exists():
                    samples.sample(pid)
            time.sleep(0.05)


@dataclass
class ServerActivity:
    """What the analytics PostgreSQL did in the measured window: seconds an autovacuum worker ran per table,
    checkpoints, WAL and full-page images written (big-state costs that the run worker's CPU does not show)."""

    vacuum_seconds: dict[str, float] = field(default_factory=dict)
    checkpoints: int = 0
    wal_mb: float = 0.0
    full_page_images: int = 0
    seconds: float = float("nan")
    checks_runs: int = 0
    """`rollup_checks` runs that overlapped the window: the 10-minute recompute of today (steady state, not
    avoided) and the hourly run, if the window outlasted the wait for it."""

    def summary(self) -> str:
        seconds = self.seconds
        vacuums = ", ".join(f"{table} {secs:.0f}s" for table, secs in sorted(self.vacuum_seconds.items())) or "none"
        return (
            f"autovacuum: {vacuums}; checkpoints {self.checkpoints}; WAL {self.wal_mb / seconds:.1f} MB/s, "
            f"{self.full_page_images / seconds:.0f} full-page images/s; checks runs {self.checks_runs}"
        )


def watch_server(database_url: str, stop: threading.Event, activity: ServerActivity) -> None:
    """Sample the analytics database's autovacuum workers every second until `stop`; count checkpoints and
    WAL between the start and `stop`."""
    totals = """SELECT (SELECT checkpoints_timed + checkpoints_req FROM pg_stat_bgwriter),
                       (SELECT wal_bytes FROM pg_stat_wal), (SELECT wal_fpi FROM pg_stat_wal)"""
    with psycopg.connect(database_url, autocommit=True) as conn:
        before, began = conn.execute(totals).fetchone(), time.monotonic()
        while not stop.wait(1.0):
            for (table,) in conn.execute(
                """SELECT p.relid::regclass::text FROM pg_stat_progress_vacuum p
                   WHERE p.datname = current_database()"""
            ).fetchall():
                activity.vacuum_seconds[table] = activity.vacuum_seconds.get(table, 0.0) + 1.0
        after = conn.execute(totals).fetchone()
    activity.seconds = time.monotonic() - began
    activity.checkpoints = after[0] - before[0]
    activity.wal_mb = float(after[1] - before[1]) / 1e6
    activity.full_page_images = after[2] - before[2]


def run_walls(dagster_url: str, since: float, until: float) -> list[float]:
    """Wall seconds, start to end, of each rollups run that started in [since, until)."""
    with psycopg.connect(dagster_url, autocommit=True) as conn:
        rows = conn.execute(
            """SELECT end_time - start_time FROM runs
               WHERE pipeline_name = 'rollups' AND start_time >= %s AND start_time < %s AND end_time IS NOT NULL""",
            (since, until),
        ).fetchall()
    return sorted(float(wall) for (wall,) in rows)


with warnings.catch_warnings():  # dagster's beta notices about the definitions, irrelevant here
    warnings.simplefilter("ignore")
    from assets.jobs import rollup_checks_hourly

CHECKS_MINUTE = int(rollup_checks_hourly.cron_schedule.split()[0])  # type: ignore[union-attr]
IN_PROGRESS = ("QUEUED", "NOT_STARTED", "STARTING", "STARTED", "CANCELING")


def checks_runs(dagster_url: str, since: float | None = None, until: float | None = None) -> int:
    """`rollup_checks` runs in progress (no window), or that overlapped [since, until)."""
    with psycopg.connect(dagster_url, autocommit=True) as conn:
        if since is None:
            query, args = "status = ANY(%s)", (list(IN_PROGRESS),)
        else:
            query, args = "start_time < %s AND (end_time IS NULL OR end_time > %s)", (until, since)
        row = conn.execute(f"SELECT count(*) FROM runs WHERE pipeline_name = 'rollup_checks' AND {query}", args)
        return int(row.fetchone()[0])  # type: ignore[index]


def clear_of_checks(dagster_url: str, seconds: float) -> None:
    """Wait until no hourly `rollup_checks` run is in progress or due in the next `seconds`: on a big day its
    recompute check takes both cores for a minute or more each hour, and a 2-minute window that overlaps
    it would report that minute as if it were the whole hour."""
    while True:
        now = dt.datetime.now(dt.UTC)
        due = now.replace(minute=CHECKS_MINUTE, second=0, microsecond=0)
        until_due = (due - now).total_seconds() % 3600
        if checks_runs(dagster_url):
            time.sleep(5)
        elif until_due < seconds:
            print(f"waiting {until_due + 15:.0f}s for the hourly checks run (minute {CHECKS_MINUTE}) ...", flush=True)
            time.sleep(until_due + 15)
        else:
            return


def caught_up(database_url: str, lake: Path, events: int) -> bool:
    """The lake holds at least `events` rows for today and today's sales ledger reflects the newest table
    version that added rows to it (a later compaction commit changes no data and triggers no run)."""
    snapshot = read_partition(lake, LakeTable.EVENTS, dt.datetime.now(dt.UTC).date())
    if snapshot.rows < events:
        return False
    changed = lake_partition_versions(lake)[LakeTable.EVENTS].get(snapshot.date, snapshot.version)
    with psycopg.connect(database_url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT lake_version FROM analytics.materializations WHERE asset = 'sales' AND partition_date = %s",
            (snapshot.date,),
        ).fetchone()
    return row is not None and row[0] >= changed


def simulator(
    command: str, env: dict[str, str], topic: str, servers: str, *args: str, output: Path | None = None
) -> subprocess.Popen:
    """The simulator in the background; its summary (stdout) and log (stderr) go to `output`(.log) if given."""
    out = open(output, "w") if output else subprocess.DEVNULL  # noqa: SIM115 (the child keeps its copy)
    err = open(output.with_suffix(".log"), "w") if output else subprocess.DEVNULL  # noqa: SIM115
    return subprocess.Popen(
        [sys.executable, "-m", "simulator", command, *args, "--topic", topic, "--bootstrap-servers", servers,
         "--no-progress"],
        env=env, cwd=PROJECT_ROOT, stdout=out, stderr=err,
    )  # fmt: skip


MIN_BURST_DAYS = 0.01
"""The simulator's smallest --days (a burst spreads over at least ~15 minutes before now)."""
LOST_TOLERATED = 0.01
"""A burst may lose this share of its messages (delivery timed out on a loaded broker) and still be used:
the case then waits for, and reports, what was delivered."""


def delivered_by_burst(summary: Path, sent: int) -> int:
    """Events a failed burst still delivered, from its summary; raises when it lost too many or none left one."""
    try:
        delivery = json.loads(summary.read_text().strip().splitlines()[-1])["delivery"]
    except (OSError, IndexError, ValueError, KeyError) as exc:
        raise RuntimeError(f"simulator burst failed without a summary: see {summary.with_suffix('.log')}") from exc
    lost = int(delivery["failed"]) + int(delivery["outstanding"])
    if lost > sent * LOST_TOLERATED:
        raise RuntimeError(f"simulator burst lost {lost:,} of {sent:,} messages: {delivery['errors'][:3]}")
    print(f"burst lost {lost:,} of {sent:,} messages ({delivery['errors'][:3]}); measuring with the rest", flush=True)
    return sent - lost


@dataclass
class CaseResult:
    name: str
    preloaded: int
    latencies: np.ndarray
    runs: int
    cpu: list[float]
    peak_rss_mb: list[float]
    preload_seconds: float
    state_mb: float
    run_walls: list[float]
    server: ServerActivity


@dataclass
class KeptState:
    """A preloaded case's stack state left in place (`--keep`) to be measured again (`--reuse`)."""

    day: str
    preload: int
    home: str
    topic: str
    databases: list[str]

    @staticmethod
    def load(directory: Path) -> KeptState:
        return KeptState(**json.loads((directory / "kept.json").read_text()))

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "kept.json").write_text(json.dumps(asdict(self), indent=2))


def run_case(
    name: str,
    preload: int,
    rate: float,
    measured: float,
    incremental: bool,
    keep: Path | None = None,
    reuse: KeptState | None = None,
) -> CaseResult:
    """Measure one case on a fresh stack state (preloading `preload` events) or on the `reuse`d one; keep
    the state in `keep` (a directory) instead of deleting it."""
    settings = get_settings()
    today = dt.datetime.now(dt.UTC).date().isoformat()
    if reuse is not None:
        if reuse.day != today:
            raise SystemExit(f"the kept state holds {reuse.day}, today is {today}: live traffic would land elsewhere")
        topic, home = reuse.topic, Path(reuse.home)
    else:
        topic = f"bench.volume.{uuid.uuid4().hex[:8]}"
        ensure_topic(settings.bootstrap_servers, topic, settings.events_topic_partitions)
        home = Path(tempfile.mkdtemp(prefix="bench-volume-")) / "home"
    reused = reuse.databases if reuse is not None else ()
    with isolated_stack_databases(settings, "bench_volume", topic, reused, keep=keep is not None) as env:
        run = start_isolated_run(
            home,
            home.parent / "run.log",
            {**env, "SHOPPULSE_INCREMENTAL_ROLLUPS": str(incremental).lower()},
            timeout=300,
        )
        result = measure_case(name, preload, rate, measured, run, home, env, topic, send=reuse is None)
    if keep is not None:
        urls = (env["DATABASE_URL"], env["DAGSTER_DATABASE_URL"])
        databases = [str(psycopg.conninfo.conninfo_to_dict(url)["dbname"]) for url in urls]
        KeptState(today, preload, str(home), topic, databases).save(keep)
        print(f"[{name}] state kept: {keep / 'kept.json'}", flush=True)
    return result


def drop_kept(directory: Path) -> None:
    """Delete a kept state: its databases, topic and home."""
    kept, settings = KeptState.load(directory), get_settings()
    drop_databases(settings, kept.databases)
    admin = AdminClient({"bootstrap.servers": settings.bootstrap_servers})
    for future in admin.delete_topics([kept.topic]).values():
        future.result(60)
    shutil.rmtree(Path(kept.home).parent, ignore_errors=True)
    (directory / "kept.json").unlink()


def measure_case(
    name: str,
    preload: int,
    rate: float,
    measured: float,
    run: IsolatedRun,
    home: Path,
    env: dict[str, str],
    topic: str,
    send: bool = True,
) -> CaseResult:
    """Preload today (`send`: else it holds the events already), then measure live freshness on the running
    isolated stack `run` (stopped on exit)."""
    settings = get_settings()
    database_url, dagster_url = env["DATABASE_URL"], env["DAGSTER_DATABASE_URL"]
    today = dt.datetime.now(dt.UTC).date().isoformat()
    live = None
    stop = threading.Event()
    samples = WorkerSamples()
    activity = ServerActivity()
    try:
        began = time.time()
        if preload and send:
            now = dt.datetime.now(dt.UTC)
            past = (now - now.replace(hour=0, minute=0, second=0, microsecond=0)).total_seconds() / 86_400
            if past * 0.95 < MIN_BURST_DAYS:
                raise SystemExit(f"today (UTC) is {past * 1440:.0f} minutes old: a preload would spill into yesterday")
            burst = simulator(
                "burst", run.env, topic, settings.bootstrap_servers, "--events", str(preload),
                "--days", f"{past * 0.95:.4f}", "--seed", "11", output=home.parent / "burst.json",
            )  # fmt: skip
            print(f"[{name}] preloading {preload:,} events into today ...", flush=True)
            if burst.wait() != 0:
                preload = delivered_by_burst(home.parent / "burst.json", preload)
        while preload and not caught_up(database_url, home / "lake", preload):
            if dt.datetime.now(dt.UTC).date().isoformat() != today:
                raise SystemExit("the UTC day ended before the preload was folded: live traffic would land elsewhere")
            time.sleep(5)
        preload_seconds = time.time() - began
        clear_of_checks(dagster_url, WARMUP_SECONDS + measured + 30)
        with psycopg.connect(database_url, autocommit=True) as conn:
            state_mb = state_bytes(conn) / 1e6
        print(f"[{name}] today holds {preload:,} events ({preload_seconds:.0f}s); live at {rate:.0f}/s", flush=True)
        live = simulator(
            "live", run.env, topic, settings.bootstrap_servers, "--rate", str(rate),
            "--duration", str(WARMUP_SECONDS + measured + 5), "--seed", "7",
        )  # fmt: skip
        time.sleep(WARMUP_SECONDS)
        start = time.time()
        watcher = threading.Thread(target=watch_run_workers, args=(dagster_url, start, stop, samples), daemon=True)
        watcher.start()
        server = threading.Thread(target=watch_server, args=(database_url, stop, activity), daemon=True)
        server.start()
        serving, _ = poll_watermarks(database_url, None, measured + 20)
        stop.set()
        watcher.join(10)
        server.join(10)
        walls = run_walls(dagster_url, start, start + measured)
        activity.checks_runs = checks_runs(dagster_url, start, start + measured)
    finally:
        stop.set()
        if live is not None and live.poll() is None:
            live.send_signal(signal.SIGTERM)
            live.wait(30)
        run.proc.send_signal(signal.SIGINT)
        run.proc.wait(180)
    latencies = visibility_latencies(serving, start, start + measured)
    return CaseResult(
        name,
        preload,
        latencies,
        len({w for _, w in serving}),
        sorted(samples.cpu.values()),
        sorted(samples.peak_rss_mb.values()),
        preload_seconds,
        state_mb,
        walls,
        activity,
    )


def quantiles(values: list[float] | np.ndarray) -> tuple[float, float, float]:
    if len(values) == 0:
        return (float("nan"),) * 3  # type: ignore[return-value]
    p50, p95, p99 = np.percentile(values, [50, 95, 99])
    return float(p50), float(p95), float(p99)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preload", type=int, nargs="+", default=[10_000_000], help="events preloaded into today")
    parser.add_argument("--rate", type=float, default=1000.0, help="live simulator events/s")
    parser.add_argument("--minutes", type=float, default=2.0, help="measured minutes per case (after a 30 s warm-up)")
    parser.add_argument(
        "--modes",
        nargs="+",
        choices=["fold", "recompute"],
        default=["fold"],
        help="live runs fold (the default) and/or recompute the day (SHOPPULSE_INCREMENTAL_ROLLUPS=false)",
    )
    state = parser.add_mutually_exclusive_group()
    state.add_argument("--keep", type=Path, metavar="DIR", help="keep the last preloaded case's state in DIR")
    state.add_argument("--reuse", type=Path, metavar="DIR", help="measure on the state kept in DIR (no preload)")
    state.add_argument("--drop", type=Path, metavar="DIR", help="delete the state kept in DIR, and exit")
    args = parser.parse_args()
    # Started in the background, a process inherits SIGINT ignored: make Ctrl-C / kill -INT / -TERM tear the
    # stacks down (the `finally` of each case) instead of leaving them running.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    services.up(get_settings())
    if args.drop:
        drop_kept(args.drop)
        return
    kept = KeptState.load(args.reuse) if args.reuse else None
    cases = []
    for mode in args.modes:
        cases.append(run_case(f"{mode}: empty day", 0, args.rate, args.minutes * 60, mode == "fold"))
        if kept is not None:
            name = f"{mode}: kept {kept.preload / 1e6:g}M"
            cases.append(run_case(name, kept.preload, args.rate, args.minutes * 60, mode == "fold", args.reuse, kept))
            continue
        for i, size in enumerate(args.preload):
            keep = args.keep if i == len(args.preload) - 1 and mode == args.modes[-1] else None
            cases.append(run_case(f"{mode}: {size / 1e6:g}M", size, args.rate, args.minutes * 60, mode == "fold", keep))

    print()
    print(f"live {args.rate:.0f} events/s, {args.minutes:g} min measured per case")
    print(
        f"{'case':<22} {'p50 s':>6} {'p95 s':>6} {'p99 s':>6} {'runs':>5} {'run CPU p50/p95 s':>18} "
        f"{'worker peak RSS max MB':>23} {'preload s':>10} {'fold state MB':>14}"
    )
    for case in cases:
        p50, p95, p99 = quantiles(case.latencies)
        c50, c95, _ = quantiles(case.cpu)
        rss = max(case.peak_rss_mb, default=float("nan"))
        print(
            f"{case.name:<22} {p50:6.1f} {p95:6.1f} {p99:6.1f} {len(case.cpu):5d} {c50:8.2f} / {c95:<7.2f} "
            f"{rss:23.0f} {case.preload_seconds:10.0f} {case.state_mb:14.0f}"
        )
    print()
    for case in cases:
        w50, w95, _ = quantiles(case.run_walls)
        print(f"{case.name}: run wall p50/p95 {w50:.2f} / {w95:.2f} s; {case.server.summary()}")
    for case in cases:
        empty = next(c for c in cases if c.preloaded == 0 and c.name.split(":")[0] == case.name.split(":")[0])
        if case is empty:
            continue
        ratio_p95 = quantiles(case.latencies)[1] / quantiles(empty.latencies)[1]
        ratio_cpu = quantiles(case.cpu)[0] / quantiles(empty.cpu)[0]
        print(
            f"{case.name} / empty day: p95 {ratio_p95:.2f}x (target <= 1.5x), run CPU p50 {ratio_cpu:.2f}x; "
            f"worker peak RSS {max(case.peak_rss_mb, default=float('nan')):.0f} MB (target <= 1024)"
        )


if __name__ == "__main__":
    main()
