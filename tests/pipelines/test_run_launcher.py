"""The fork-server run launcher: health and termination act on the recorded run worker."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Callable
from multiprocessing.queues import SimpleQueue
from typing import Any

from dagster import DagsterRunStatus, instance_for_test
from dagster._core.launcher.base import WorkerStatus
from dagster._core.storage.tags import BACKFILL_ID_TAG
from dagster._core.test_utils import create_run_for_test

from pipelines.run_launcher import (
    PID_TAG,
    ForkServerRunLauncher,
    _enter_worker,
    run_niceness,
)
from shoppulse.allocator import BATCH_MALLOC_CONF, POLARS_MALLOC_CONF_VAR

LAUNCHER = {"module": "pipelines.run_launcher", "class": "ForkServerRunLauncher"}


def test_instance_loads_the_launcher_from_dagster_yaml_config() -> None:
    with instance_for_test(overrides={"run_launcher": LAUNCHER}) as instance:
        assert isinstance(instance.run_launcher, ForkServerRunLauncher)
        assert instance.run_launcher.supports_check_run_worker_health
        assert instance.run_launcher._background_jobs == ("rollup_checks", "dagster_storage_retention")
    configured = {**LAUNCHER, "config": {"background_jobs": ["alerts"], "background_niceness": 5}}
    with instance_for_test(overrides={"run_launcher": configured}) as instance:
        assert instance.run_launcher._background_jobs == ("alerts",)
        assert instance.run_launcher._background_niceness == 5


def test_check_and_backfill_runs_are_niced_live_runs_are_not() -> None:
    background = ("rollup_checks", "dagster_storage_retention")
    with instance_for_test() as instance:
        live = create_run_for_test(instance, job_name="rollups")
        check = create_run_for_test(instance, job_name="rollup_checks")
        backfill = create_run_for_test(instance, job_name="rollups", tags={BACKFILL_ID_TAG: "abcdefgh"})
        assert run_niceness(live, background, 10) == 0
        assert run_niceness(check, background, 10) == 10
        assert run_niceness(backfill, background, 7) == 7
        assert run_niceness(check, (), 10) == 0


def test_health_and_termination_follow_the_worker_pid() -> None:
    with instance_for_test(overrides={"run_launcher": LAUNCHER}) as instance:
        launcher = instance.run_launcher
        # Like a run worker, it handles SIGINT even if it was started with SIGINT ignored (as under CI).
        worker = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "import signal, time; signal.signal(signal.SIGINT, signal.default_int_handler); time.sleep(60)",
            ]
        )
        run = create_run_for_test(instance, status=DagsterRunStatus.STARTED, tags={PID_TAG: str(worker.pid)})
        assert launcher.check_run_worker_health(run).status == WorkerStatus.RUNNING
        assert launcher.terminate(run.run_id) is True
        assert worker.wait(timeout=10) != 0  # interrupted
        assert instance.get_run_by_id(run.run_id).status == DagsterRunStatus.CANCELING
        assert launcher.check_run_worker_health(instance.get_run_by_id(run.run_id)).status == WorkerStatus.NOT_FOUND
        untracked = create_run_for_test(instance, status=DagsterRunStatus.STARTED)
        assert launcher.check_run_worker_health(untracked).status == WorkerStatus.UNKNOWN


def _in_forked_worker(report: Callable[[SimpleQueue], None], timeout: float = 120) -> Any:
    """What `report` puts on its queue when run in a worker forked from the launcher's fork server (the
    server is per process: whichever launcher started it, it preloads `polars` and the warmup module)."""
    context = ForkServerRunLauncher(preload_modules=["polars"])._fork_server()
    queue = context.SimpleQueue()
    worker = context.Process(target=report, args=(queue,))
    worker.start()
    worker.join(timeout)
    assert worker.exitcode == 0
    return queue.get()


def _report_priority_after_entering(queue: SimpleQueue) -> None:
    before = os.getpriority(os.PRIO_PROCESS, 0)
    _enter_worker(10)
    threads_priority: list[int] = []
    thread = threading.Thread(target=lambda: threads_priority.append(os.getpriority(os.PRIO_PROCESS, 0)))
    thread.start()
    thread.join()
    queue.put((before, os.getpriority(os.PRIO_PROCESS, 0), threads_priority[0], os.getsid(0) == os.getpid()))


def test_a_background_worker_and_its_threads_run_at_lower_cpu_priority() -> None:
    before, after, thread, own_session = _in_forked_worker(_report_priority_after_entering)
    assert after == min(before + 10, 19)
    assert thread == after  # polars' and DuckDB's threads, started later, inherit it
    assert own_session


def _report_jemalloc_options(queue: SimpleQueue) -> None:
    queue.put(os.environ.get(POLARS_MALLOC_CONF_VAR, ""))


def test_run_workers_keep_freed_memory_for_reuse() -> None:
    """Workers forked from the fork server run polars with the batch allocator options (last wins)."""
    options = _in_forked_worker(_report_jemalloc_options)
    assert options.endswith(BATCH_MALLOC_CONF), options


def _report_gc_state(queue: SimpleQueue) -> None:
    import gc

    import polars

    gc.collect()
    collectable = {id(o) for o in gc.get_objects()}  # every generation a collection walks (not the frozen one)
    queue.put((gc.get_freeze_count(), id(vars(polars)) in collectable))


def test_run_workers_collect_only_their_own_objects() -> None:
    """The fork server freezes its preloaded heap (`gc.freeze`): a worker's full collections skip the
    inherited objects (here polars' module namespace) instead of walking them all (100-250 ms each with
    dagster, polars and duckdb loaded)."""
    frozen, preloaded_collectable = _in_forked_worker(_report_gc_state)
    assert frozen > 10_000, frozen
    assert not preloaded_collectable


def _report_preloaded(queue: SimpleQueue) -> None:
    queue.put(sorted(m for m in ("pipelines.definitions", "shoppulse.rollups.incremental.fold") if m in sys.modules))


def test_run_workers_find_the_code_location_imported() -> None:
    assert _in_forked_worker(_report_preloaded) == ["pipelines.definitions", "shoppulse.rollups.incremental.fold"]


def test_a_worker_forgets_preloaded_code_whose_source_changed(tmp_path, monkeypatch) -> None:
    """A run must execute the code on disk: a preloaded project module whose file changed is dropped, so
    the job's import loads it afresh; unchanged code stays preloaded."""
    from pipelines import fork_warmup

    source = tmp_path / "shoppulse_probe_module.py"
    source.write_text("VALUE = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import shoppulse_probe_module  # type: ignore[import-not-found]

    monkeypatch.setitem(sys.modules, "shoppulse_probe_module", shoppulse_probe_module)
    preloaded = {"shoppulse_probe_module": source}
    monkeypatch.setattr(fork_warmup, "_PRELOADED", preloaded)
    monkeypatch.setattr(fork_warmup, "_STAMPS", fork_warmup._fingerprint(preloaded))
    assert not fork_warmup.forget_changed_code()
    assert "shoppulse_probe_module" in sys.modules

    source.write_text("VALUE = 22\n")  # a new size: changed even within the file system's mtime resolution
    assert fork_warmup.forget_changed_code()
    assert "shoppulse_probe_module" not in sys.modules
    import shoppulse_probe_module as reloaded  # type: ignore[import-not-found]

    assert reloaded.VALUE == 22
