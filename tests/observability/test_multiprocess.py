"""Pipeline metrics of exited processes are kept, and the metrics directory does not grow per process."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from prometheus_client import CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector

from shoppulse.settings import PROJECT_ROOT

# A parent that forks 40 short-lived "run workers", two at a time; each records one rollup run with two
# partitions and one drain tick, then exits (some of them by os._exit, like a crash).
WORKERS = textwrap.dedent(
    """
    import os, sys
    from shoppulse.lake.drain import DrainResult
    from shoppulse.observability import metrics
    from shoppulse.rollups.writer import WriteOutcome
    import datetime as dt

    def work(i):
        with metrics.rollup_run("event_rollups") as record:
            record([WriteOutcome("sales", dt.date(2026, 1, 1), True, 10, 1, None, rows_changed=7),
                    WriteOutcome("users", dt.date(2026, 1, 1), False, 0, 1, 2)])
        result = DrainResult(status="drained", seq=i + 1, messages=100, events=95, late=1, quarantined=4,
                             quarantined_by_code={"invalid_json": 3, "oversized": 1}, written_bytes=1000,
                             commit_seconds=0.01, seconds=0.5)
        metrics.record_drain(result, now=1000.0 + i)

    metrics.pipeline_metrics()  # the parent takes a slot of its own first
    for batch in range(20):
        children = []
        for j in range(2):
            pid = os.fork()
            if pid == 0:
                work(batch * 2 + j)
                os._exit(0)
            children.append(pid)
        for pid in children:
            os.waitpid(pid, 0)
    """
)


def sample(registry: CollectorRegistry, name: str, labels: dict[str, str] | None = None) -> float | None:
    return registry.get_sample_value(name, labels or {})


def test_counts_of_exited_workers_add_up_and_files_stay_bounded(tmp_path: Path) -> None:
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    subprocess.run([sys.executable, "-c", WORKERS], env=env, cwd=PROJECT_ROOT, check=True, timeout=120)

    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(tmp_path))
    assert sample(registry, "shoppulse_rollup_runs_total", {"group": "event_rollups", "outcome": "success"}) == 40
    assert sample(registry, "shoppulse_rollup_run_duration_seconds_count", {"group": "event_rollups"}) == 40
    assert sample(registry, "shoppulse_rollup_partitions_total", {"asset": "sales", "result": "written"}) == 40
    assert sample(registry, "shoppulse_rollup_partitions_total", {"asset": "users", "result": "superseded"}) == 40
    assert sample(registry, "shoppulse_rollup_rows_changed_total", {"asset": "sales"}) == 280
    assert sample(registry, "shoppulse_drain_messages_total") == 4000
    assert sample(registry, "shoppulse_drain_quarantined_messages_total", {"reason": "invalid_json"}) == 120
    assert sample(registry, "shoppulse_drain_written_bytes_total") == 40_000
    assert sample(registry, "shoppulse_drain_ticks_total", {"status": "drained"}) == 40
    assert sample(registry, "shoppulse_lake_version") == 40  # max over every worker that ever ran
    assert sample(registry, "shoppulse_drain_last_tick_timestamp_seconds") == 1039.0
    # One set of files per process alive at the same time (parent + two workers), not one per worker.
    slots = {path.name.rsplit("_", 1)[-1] for path in tmp_path.glob("*.db")}
    assert slots <= {"s0.db", "s1.db", "s2.db"}, sorted(slots)


def test_a_failing_run_is_counted_as_a_failure_and_reraised(tmp_path: Path) -> None:
    script = textwrap.dedent(
        """
        from shoppulse.observability import metrics
        try:
            with metrics.rollup_run("fx_rates"):
                raise RuntimeError("boom")
        except RuntimeError:
            pass
        else:
            raise SystemExit("the error was swallowed")
        """
    )
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    subprocess.run([sys.executable, "-c", script], env=env, cwd=PROJECT_ROOT, check=True, timeout=60)
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(tmp_path))
    assert sample(registry, "shoppulse_rollup_runs_total", {"group": "fx_rates", "outcome": "failure"}) == 1
    assert sample(registry, "shoppulse_rollup_runs_total", {"group": "fx_rates", "outcome": "success"}) == 0
