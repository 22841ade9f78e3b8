"""A run launcher that starts run workers from a warm fork server instead of a fresh interpreter.

Dagster's default launcher has the code server *spawn* a new Python for every run, which then imports
dagster, polars, duckdb and the code location: ~4–6 s of CPU on a 2-core machine before the first
step, for a rollup that itself takes ~1 s. At a 5-second cadence that start-up is most of the
freshness delay and most of the CPU. This launcher keeps a `multiprocessing` fork server that has
imported the heavy third-party modules and the code location once (`pipelines/fork_warmup.py`); each run
worker is forked from it (a few ms) and then does exactly what `dagster api execute_run` does — load the
job from the run's code origin, execute it, report events to the instance. A worker whose preloaded
project sources changed on disk since imports them afresh, so code changes are picked up on the next
run.

Runs of background jobs (the recompute checks, storage retention) and backfill runs get a lower CPU
priority (`nice`) than live rollup runs: on a 2-core machine a check that recomputes a 50M-event day
takes both cores for a minute, and the live runs, whose freshness people watch, must not wait behind it.

Termination and run monitoring work on the worker's pid, recorded as a run tag.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from dagster import Array, Field
from dagster._core.launcher.base import (
    CheckRunHealthResult,
    LaunchRunContext,
    RunLauncher,
    WorkerStatus,
)
from dagster._core.storage.dagster_run import DagsterRun
from dagster._core.storage.tags import BACKFILL_ID_TAG
from dagster._grpc.types import ExecuteRunArgs
from dagster._serdes import ConfigurableClass, ConfigurableClassData, serialize_value

from shoppulse.allocator import tune_for_batch

PID_TAG = "shoppulse/run_worker_pid"
DEFAULT_PRELOAD = (
    "dagster",
    "dagster_postgres",
    "polars",
    "duckdb",
    "psycopg",
    "pyarrow",
    "numpy",
    # what every run imports besides: Dagster's run entry point and the libraries the code location uses
    "dagster._cli.api",
    "dagster._grpc.impl",
    "dagster._utils.test.definitions",
    "dagster_postgres.storage",
    "deltalake",
    "pyarrow.compute",
    "pyarrow.parquet",
    "pyarrow.dataset",
    "numpy.ma",
    "confluent_kafka.admin",
    "prometheus_client",
    "pydantic_settings",
    "tenacity",
    "upath",
    "fsspec",
    "psycopg2",
)
WARMUP_MODULE = "pipelines.fork_warmup"
"""Always imported last by the fork server: the code location, then `gc.freeze()`."""
NICE_TAG = "shoppulse/run_worker_nice"
DEFAULT_BACKGROUND_JOBS = ("rollup_checks", "dagster_storage_retention")
DEFAULT_BACKGROUND_NICENESS = 10
"""nice 10 against 0: under CPU contention the kernel gives a live run ~9× the share of a background one
(weights 1024 : 110); on an idle machine a background run is as fast as ever."""


def run_niceness(run: DagsterRun, background_jobs: Sequence[str], background_niceness: int) -> int:
    """How much lower than the fork server a run worker's CPU priority is: `background_niceness` for a run
    of a background job or of a backfill, else 0 (live rollup runs, reruns, the reconciler's runs)."""
    if run.job_name in background_jobs or BACKFILL_ID_TAG in run.tags:
        return background_niceness
    return 0


def _enter_worker(niceness: int) -> None:
    """First steps of a forked run worker, before it loads the job: code on disk, own session, SIGINT
    handled, CPU priority lowered by `niceness` (threads started later inherit it)."""
    from pipelines import fork_warmup

    fork_warmup.forget_changed_code()
    os.setsid()  # its own process group, like a spawned worker: signals to the daemon do not reach it
    # `terminate` interrupts the worker; a daemon started in the background may pass SIGINT on ignored.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    if niceness:
        os.nice(niceness)


def _execute_run(serialized_args: str, niceness: int = 0) -> None:
    """Body of a forked run worker: what `dagster api execute_run <args>` does."""
    from dagster._cli.api import execute_run_command

    _enter_worker(niceness)
    execute_run_command.callback(serialized_args, None)  # type: ignore[misc]


class ForkServerRunLauncher(RunLauncher, ConfigurableClass):
    """Launch each run as a process forked from a fork server with `preload_modules` imported."""

    def __init__(
        self,
        preload_modules: Sequence[str] = DEFAULT_PRELOAD,
        background_jobs: Sequence[str] = DEFAULT_BACKGROUND_JOBS,
        background_niceness: int = DEFAULT_BACKGROUND_NICENESS,
        inst_data: ConfigurableClassData | None = None,
    ):
        self._inst_data = inst_data
        self._preload = list(preload_modules)
        self._background_jobs = tuple(background_jobs)
        self._background_niceness = background_niceness
        self._context: multiprocessing.context.ForkServerContext | None = None
        self._lock = threading.Lock()
        self._workers: dict[str, multiprocessing.process.BaseProcess] = {}
        super().__init__()

    @property
    def inst_data(self) -> ConfigurableClassData | None:
        return self._inst_data

    @classmethod
    def config_type(cls) -> dict[str, Field]:
        return {
            "preload_modules": Field(
                Array(str),
                is_required=False,
                default_value=list(DEFAULT_PRELOAD),
                description="Modules the fork server imports once, so run workers start without importing them.",
            ),
            "background_jobs": Field(
                Array(str),
                is_required=False,
                default_value=list(DEFAULT_BACKGROUND_JOBS),
                description="Jobs whose runs (like every backfill run) run at a lower CPU priority than live runs.",
            ),
            "background_niceness": Field(
                int,
                is_required=False,
                default_value=DEFAULT_BACKGROUND_NICENESS,
                description="How much background and backfill runs are niced (0 = same priority as live runs).",
            ),
        }

    @classmethod
    def from_config_value(
        cls, inst_data: ConfigurableClassData, config_value: Mapping[str, Any]
    ) -> ForkServerRunLauncher:
        return cls(
            preload_modules=config_value.get("preload_modules", DEFAULT_PRELOAD),
            background_jobs=config_value.get("background_jobs", DEFAULT_BACKGROUND_JOBS),
            background_niceness=config_value.get("background_niceness", DEFAULT_BACKGROUND_NICENESS),
            inst_data=inst_data,
        )

    def _fork_server(self) -> multiprocessing.context.ForkServerContext:
        with self._lock:
            if self._context is None:
                tune_for_batch()  # the fork server (started next) loads polars with it; run workers inherit it
                context = multiprocessing.get_context("forkserver")
                context.set_forkserver_preload([*self._preload, WARMUP_MODULE])
                self._context = context
            return self._context

    def launch_run(self, context: LaunchRunContext) -> None:
        run = context.dagster_run
        if run.job_code_origin is None:
            raise ValueError(f"run {run.run_id} has no code origin to load its job from")
        args = ExecuteRunArgs(
            job_origin=run.job_code_origin,
            run_id=run.run_id,
            instance_ref=self._instance.get_ref(),
            set_exit_code_on_failure=True,
        )
        niceness = run_niceness(run, self._background_jobs, self._background_niceness)
        worker = self._fork_server().Process(
            target=_execute_run, args=(serialize_value(args), niceness), name=f"dagster-run-{run.run_id[:8]}"
        )
        worker.start()
        with self._lock:
            self._workers = {rid: w for rid, w in self._workers.items() if w.is_alive()}
            self._workers[run.run_id] = worker
        self._instance.add_run_tags(run.run_id, {PID_TAG: str(worker.pid), NICE_TAG: str(niceness)})
        priority = f", niced by {niceness} as a background run" if niceness else ""
        self._instance.report_engine_event(
            f"Forked run worker (pid {worker.pid}{priority}) from the warm fork server.", run, cls=self.__class__
        )

    def _pid(self, run: DagsterRun) -> int | None:
        value = run.tags.get(PID_TAG)
        return int(value) if value and value.isdigit() else None

    def terminate(self, run_id: str) -> bool:
        run = self._instance.get_run_by_id(run_id)
        if run is None or run.is_finished:
            return False
        pid = self._pid(run)
        self._instance.report_run_canceling(run)
        if pid is None:
            return False
        try:
            os.kill(pid, signal.SIGINT)  # the worker turns an interrupt into a clean run termination
        except ProcessLookupError:
            return False
        return True

    @property
    def supports_check_run_worker_health(self) -> bool:
        return True

    def check_run_worker_health(self, run: DagsterRun) -> CheckRunHealthResult:
        pid = self._pid(run)
        if pid is None:
            return CheckRunHealthResult(WorkerStatus.UNKNOWN, "no run worker pid recorded yet")
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return CheckRunHealthResult(WorkerStatus.NOT_FOUND, f"run worker {pid} is gone")
        except PermissionError:
            pass
        return CheckRunHealthResult(WorkerStatus.RUNNING, run_worker_id=str(pid))

    def join(self, timeout: int = 30) -> None:
        with self._lock:
            workers = list(self._workers.values())
        for worker in workers:
            worker.join(timeout)
