"""The application processes `make run` supervises: Dagster code server, daemon, webserver, API, simulator."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from shoppulse.allocator import DRAIN_MALLOC_CONF, with_malloc_conf
from shoppulse.settings import CODE_LOCATION_MODULE, PROJECT_ROOT, Settings
from shoppulse.stack import celery, prometheus
from shoppulse.stack.errors import StackError
from shoppulse.stack.processes import PidFile, port_is_open, process_cmdline, start_detached, stop_pid, tail

BIN = Path(sys.executable).parent
CODE_SERVER = "dagster-code-server"
DAEMON = "dagster-daemon"
SIMULATOR = "simulator"


@dataclass(frozen=True)
class AppProcess:
    """One supervised process: how to start it, its port (for the in-use check) and readiness URL."""

    name: str
    argv: tuple[str, ...]
    port: int | None = None
    port_var: str | None = None
    ready_url: str | None = None
    stop_timeout: float = 20.0
    malloc_conf: str | None = None
    """Polars allocator options for this process (see shoppulse/allocator.py)."""
    multiprocess_metrics: bool = False
    """Writes its metrics to the shared metrics directory (shoppulse/observability/multiprocess.py)."""

    def environment(self, env: dict[str, str]) -> dict[str, str]:
        env = with_malloc_conf(env, self.malloc_conf) if self.malloc_conf else env
        if self.multiprocess_metrics and "SHOPPULSE_METRICS_DIR" in env:
            env = {**env, "PROMETHEUS_MULTIPROC_DIR": env["SHOPPULSE_METRICS_DIR"]}
        return env

    def log_path(self, settings: Settings) -> Path:
        return settings.logs_dir / f"{self.name}.log"

    def pid_file(self, settings: Settings) -> PidFile:
        # The marker is the process's first distinctive argument after the interpreter.
        return PidFile(
            settings.home / "run" / f"{self.name}.pid", marker=self.argv[1] if len(self.argv) > 1 else self.argv[0]
        )


def app_processes(settings: Settings, with_simulator: bool = True) -> list[AppProcess]:
    """The processes in start order (stopped in reverse)."""
    workspace = str(settings.dagster_home / "workspace.yaml")
    apps = [
        AppProcess(
            CODE_SERVER,
            (
                str(BIN / "dagster"),
                "code-server",
                "start",
                "-m",
                CODE_LOCATION_MODULE,
                "-h",
                "127.0.0.1",
                "-p",
                str(settings.dagster_code_server_port),
            ),
            port=settings.dagster_code_server_port,
            port_var="SHOPPULSE_DAGSTER_CODE_SERVER_PORT",
            malloc_conf=DRAIN_MALLOC_CONF,  # the drain sensor runs here
            multiprocess_metrics=True,
        ),
        AppProcess(
            DAEMON,
            (str(BIN / "dagster-daemon"), "run", "-w", workspace),
            stop_timeout=30.0,
            multiprocess_metrics=True,  # its run workers record the rollup metrics
        ),
        AppProcess(
            "dagster-webserver",
            (str(BIN / "dagster-webserver"), "-h", "127.0.0.1", "-p", str(settings.dagster_port), "-w", workspace),
            port=settings.dagster_port,
            port_var="SHOPPULSE_DAGSTER_PORT",
            ready_url=f"http://127.0.0.1:{settings.dagster_port}/server_info",
        ),
        AppProcess(
            "api",
            (
                str(BIN / "uvicorn"),
                "api.main:app",
                "--host",
                settings.api_host,
                "--port",
                str(settings.api_port),
                "--no-access-log",
                "--http",
                "api.http_protocol:GuardedHttpToolsProtocol",  # request-head timeout, 400s that name the problem
                "--timeout-keep-alive",
                str(settings.api_timeout_keep_alive_seconds),
                "--limit-concurrency",
                str(settings.api_limit_concurrency),
                "--timeout-graceful-shutdown",  # open live-update streams never end by themselves
                "5",
            ),
            port=settings.api_port,
            port_var="SHOPPULSE_API_PORT",
            ready_url=f"http://127.0.0.1:{settings.api_port}/health",
        ),
    ]
    apps.extend(observability_processes(settings))
    apps.extend(celery_processes(settings))
    if with_simulator:
        apps.append(
            AppProcess(
                SIMULATOR,
                (sys.executable, "-m", "simulator", "live", "--rate", str(settings.simulator_rate)),
                multiprocess_metrics=True,
            )
        )
    return apps


def observability_processes(settings: Settings) -> list[AppProcess]:
    """The pipeline metrics exporter, and Prometheus when wanted (shoppulse/stack/prometheus.py)."""
    apps = [
        AppProcess(
            "metrics-exporter",
            (sys.executable, "-m", "shoppulse.observability.exporter"),
            port=settings.metrics_port,
            port_var="SHOPPULSE_METRICS_PORT",
            ready_url=f"http://127.0.0.1:{settings.metrics_port}/metrics",
        )
    ]
    binary = prometheus.wanted_prometheus(settings)
    if binary is not None:
        apps.append(
            AppProcess(
                "prometheus",
                prometheus.prometheus_argv(settings, binary),
                port=settings.prometheus_port,
                port_var="SHOPPULSE_PROMETHEUS_PORT",
                ready_url=f"http://127.0.0.1:{settings.prometheus_port}/-/ready",
            )
        )
    return apps


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - loopback URL we built
            return 200 <= response.status < 300
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


def describe_exit(code: int) -> str:
    """'exit code 1' or 'killed by SIGKILL' from a return code (negative = killed by that signal)."""
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-code).name}"
        return f"killed by signal {-code}"
    return f"exit code {code}"


def kill_group(pgid: int, sig: int = signal.SIGKILL) -> None:
    """Signal every process left in a process group (an app's children outlive it otherwise)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


@dataclass
class Supervised:
    """One app process under supervision: its current pid, restarts and recent deaths."""

    app: AppProcess
    pid: int | None = None
    proc: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    restarts: int = 0
    deaths: deque[float] = field(default_factory=deque)
    restart_at: float | None = None
    """Monotonic time of a pending restart (None = running, or finished for good)."""
    last_exit: str = ""
    finished: bool = False
    """A simulator that ended on its own with exit code 0 (a `--duration` run) is not restarted."""

    @property
    def state(self) -> str:
        if self.finished:
            return "finished"
        if self.restart_at is not None:
            return "restarting"
        return "running" if self.pid is not None else "stopped"


class CrashLoopError(StackError):
    """A process died more often than the crash-loop limit allows."""


class Supervisor:
    """Starts the app processes (each in its own process group, pid and log files), restarts any that
    dies with exponential backoff, and stops them in reverse order.

    Invariants: an app's process group is killed before it is restarted (so the code server's gRPC child
    never outlives it); each app gets SIGTERM when this process dies (PR_SET_PDEATHSIG); an app that dies
    more than `supervisor_crash_loop_restarts` times within `supervisor_crash_loop_window_seconds` stops
    the whole run with a CrashLoopError naming it and why.
    """

    def __init__(
        self, settings: Settings, apps: list[AppProcess], report: Callable[[str, bool], None] | None = None
    ) -> None:
        self.settings = settings
        self.apps = apps
        self.states: dict[str, Supervised] = {app.name: Supervised(app) for app in apps}
        self.env: dict[str, str] = {}
        self.report = report or (lambda message, loud: None)
        """Called with each supervision message (loud = a failure a person should see)."""

    @property
    def started(self) -> list[tuple[AppProcess, int]]:
        return [(st.app, st.pid) for st in self.states.values() if st.pid is not None]

    def stop_leftovers(self) -> list[str]:
        """Stop app processes a previous, killed `run` left behind (found by pid file), with their groups."""
        stopped = []
        for app in reversed(app_processes(self.settings)):
            pid = app.pid_file(self.settings).live_pid()
            if pid is not None:
                stop_pid(pid, app.stop_timeout)
                kill_group(pid)
                app.pid_file(self.settings).path.unlink(missing_ok=True)
                stopped.append(app.name)
        return stopped

    def _spawn(self, state: Supervised) -> None:
        app = state.app
        proc = start_detached(
            app.argv, app.log_path(self.settings), env=app.environment(self.env), cwd=PROJECT_ROOT, die_with_parent=True
        )
        app.pid_file(self.settings).write(proc.pid)
        state.pid, state.proc, state.started_at, state.restart_at = proc.pid, proc, time.monotonic(), None

    def start_all(self, env: dict[str, str], ready_timeout: float = 180.0) -> None:
        self.env = dict(env)
        for app in self.apps:
            if app.port is not None and port_is_open(app.port):
                raise StackError(
                    f"port {app.port} ({app.name}) is in use by another process: set {app.port_var} to a free port"
                )
        for app in self.apps:
            self._spawn(self.states[app.name])
            if app.name == CODE_SERVER:
                self._wait(app, lambda: port_is_open(self.settings.dagster_code_server_port), ready_timeout)
        for app in self.apps:
            if app.ready_url is not None:
                url = app.ready_url
                self._wait(app, lambda url=url: _http_ok(url), ready_timeout)
        self.write_status()

    def _wait(self, app: AppProcess, check, timeout: float) -> None:  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + timeout
        while not check():
            dead = self.dead()
            if dead:
                raise StackError(
                    f"{dead[0]} exited while starting; see {self.settings.logs_dir / (dead[0] + '.log')}:\n"
                    + tail(self.settings.logs_dir / f"{dead[0]}.log", 20)
                )
            if time.monotonic() > deadline:
                raise StackError(f"{app.name} not ready after {timeout:.0f}s; see {app.log_path(self.settings)}")
            time.sleep(0.5)

    def _reap(self, state: Supervised) -> int | None:
        """The return code when the app's process has exited (reaping it), else None."""
        if state.pid is None or state.proc is None:
            return None
        return state.proc.poll()

    def dead(self) -> list[str]:
        """Names of started processes that are no longer running (reaped; used while starting)."""
        gone = []
        for state in self.states.values():
            status = self._reap(state)
            if status is not None:
                state.last_exit = describe_exit(status)
                kill_group(state.pid)  # type: ignore[arg-type]
                state.pid = state.proc = None
                gone.append(state.app.name)
        return gone

    def supervise(self) -> None:
        """One round: notice deaths (kill the group, schedule a restart with backoff), start what is due.

        Raises CrashLoopError when an app keeps dying.
        """
        now = time.monotonic()
        changed = False
        for state in self.states.values():
            status = self._reap(state)
            if status is not None:
                self._died(state, describe_exit(status), now, clean=status == 0)
                changed = True
            if state.restart_at is not None and now >= state.restart_at:
                self._log(state.app, f"restarting {state.app.name} (restart #{state.restarts + 1})")
                self._spawn(state)
                state.restarts += 1
                changed = True
        if changed:
            self.write_status()

    def _died(self, state: Supervised, how: str, now: float, clean: bool) -> None:
        app, pid = state.app, state.pid
        assert pid is not None
        kill_group(pid)  # its children (the code server's gRPC child, run workers) die with it
        app.pid_file(self.settings).path.unlink(missing_ok=True)
        state.pid, state.proc, state.last_exit = None, None, how
        lived = now - state.started_at
        if clean and app.name == SIMULATOR:
            state.finished = True
            self._log(app, f"{app.name} finished ({how} after {lived:.0f}s); not restarted")
            return
        window = self.settings.supervisor_crash_loop_window_seconds
        state.deaths.append(now)
        while state.deaths and now - state.deaths[0] > window:
            state.deaths.popleft()
        limit = self.settings.supervisor_crash_loop_restarts
        if len(state.deaths) > limit:
            self.write_status()
            raise CrashLoopError(
                f"{app.name} keeps dying: {len(state.deaths)} exits within {window:.0f}s (limit {limit}, "
                f"SHOPPULSE_SUPERVISOR_CRASH_LOOP_RESTARTS), the last {how}; not restarting it. "
                f"See {app.log_path(self.settings)}:\n" + tail(app.log_path(self.settings), 20)
            )
        delay = min(2.0 ** (len(state.deaths) - 1), self.settings.supervisor_backoff_max_seconds)
        state.restart_at = now + delay
        self._log(app, f"{app.name} (pid {pid}) died: {how} after {lived:.0f}s; restarting in {delay:.0f}s", loud=True)

    def restart(self, name: str, reason: str) -> None:
        """Restart one app now (its whole process group, gracefully then by force), e.g. to heal it."""
        state = self.states[name]
        self._log(state.app, f"restarting {name}: {reason}", loud=True)
        if state.pid is not None and state.proc is not None:
            stop_group(state.pid, 5.0)
            state.proc.wait()
            state.last_exit = f"restarted: {reason}"
        self._spawn(state)
        state.restarts += 1
        self.write_status()

    def _log(self, app: AppProcess, message: str, loud: bool = False) -> None:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        with contextlib.suppress(OSError), open(app.log_path(self.settings), "a") as log:
            log.write(f"[{stamp}] [supervisor] {message}\n")
        self.report(message, loud)

    def write_status(self) -> None:
        """HOME/run/supervisor.json: each app's state, pid, restarts and last exit (for `stack status`)."""
        document = {
            "supervisor_pid": os.getpid(),
            "updated_at": time.time(),
            "apps": {
                name: {"state": st.state, "pid": st.pid, "restarts": st.restarts, "last_exit": st.last_exit}
                for name, st in self.states.items()
            },
        }
        path = supervisor_status_path(self.settings)
        path.parent.mkdir(parents=True, exist_ok=True)
        staging = path.with_suffix(".tmp")
        staging.write_text(json.dumps(document, indent=1))
        staging.replace(path)

    def stop_all(self) -> None:
        for state in reversed(list(self.states.values())):
            if state.pid is not None and state.proc is not None:
                stop_group(state.pid, state.app.stop_timeout)
                state.proc.poll()
                state.pid = state.proc = None
            state.restart_at = None
            state.app.pid_file(self.settings).path.unlink(missing_ok=True)
        supervisor_status_path(self.settings).unlink(missing_ok=True)


def stop_group(pid: int, timeout: float) -> None:
    """SIGTERM the process (its own handler stops its children), wait, SIGKILL; then kill its group."""
    stop_pid(pid, timeout)
    kill_group(pid)


def supervisor_status_path(settings: Settings) -> Path:
    return settings.home / "run" / "supervisor.json"


def read_supervisor_status(settings: Settings) -> dict | None:
    """The running supervisor's status document, or None when no `run` is supervising."""
    try:
        document = json.loads(supervisor_status_path(settings).read_text())
    except (FileNotFoundError, ValueError):
        return None
    if process_cmdline(int(document.get("supervisor_pid", 0))) is None:
        return None
    return document


def celery_processes(settings: Settings) -> list[AppProcess]:
    """With SHOPPULSE_RUN_LAUNCHER=celery: a local Redis (unless SHOPPULSE_REDIS_URL) and the Celery
    workers that execute the runs (shoppulse/stack/celery.py)."""
    if settings.run_launcher != "celery":
        return []
    apps = []
    if settings.redis_url_override is None:
        apps.append(
            AppProcess(
                "redis",
                celery.redis_argv(settings, celery.redis_binary()),
                port=settings.redis_port,
                port_var="SHOPPULSE_REDIS_PORT",
            )
        )
    for number in range(1, settings.celery_workers + 1):
        apps.append(
            AppProcess(
                f"celery-worker-{number}",
                celery.worker_argv(f"shoppulse-{number}", settings.celery_worker_concurrency),
                stop_timeout=60.0,
                multiprocess_metrics=True,  # the runs it executes record the rollup metrics
            )
        )
    return apps
