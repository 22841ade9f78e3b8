"""The application processes `make run` supervises: Dagster code server, daemon, webserver, API, simulator."""

from __future__ import annotations

import contextlib
import os
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from shoppulse.allocator import DRAIN_MALLOC_CONF, with_malloc_conf
from shoppulse.settings import PROJECT_ROOT, Settings
from shoppulse.stack.errors import StackError
from shoppulse.stack.processes import PidFile, port_is_open, start_detached, stop_pid, tail

BIN = Path(sys.executable).parent


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

    def environment(self, env: dict[str, str]) -> dict[str, str]:
        return with_malloc_conf(env, self.malloc_conf) if self.malloc_conf else env

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
            "dagster-code-server",
            (
                str(BIN / "dagster"),
                "code-server",
                "start",
                "-m",
                "pipelines.definitions",
                "-h",
                "127.0.0.1",
                "-p",
                str(settings.dagster_code_server_port),
            ),
            port=settings.dagster_code_server_port,
            port_var="SHOPPULSE_DAGSTER_CODE_SERVER_PORT",
            malloc_conf=DRAIN_MALLOC_CONF,  # the drain sensor runs here
        ),
        AppProcess("dagster-daemon", (str(BIN / "dagster-daemon"), "run", "-w", workspace), stop_timeout=30.0),
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
                "--timeout-graceful-shutdown",  # open live-update streams never end by themselves
                "5",
            ),
            port=settings.api_port,
            port_var="SHOPPULSE_API_PORT",
            ready_url=f"http://127.0.0.1:{settings.api_port}/health",
        ),
    ]
    if with_simulator:
        apps.append(
            AppProcess("simulator", (sys.executable, "-m", "simulator", "live", "--rate", str(settings.simulator_rate)))
        )
    return apps


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - loopback URL we built
            return 200 <= response.status < 300
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


class Supervisor:
    """Starts the app processes detached (pid files, log files), watches them, stops them in reverse."""

    def __init__(self, settings: Settings, apps: list[AppProcess]) -> None:
        self.settings = settings
        self.apps = apps
        self.started: list[tuple[AppProcess, int]] = []

    def stop_leftovers(self) -> list[str]:
        """Stop app processes a previous, killed `run` left behind (found by pid file)."""
        stopped = []
        for app in reversed(app_processes(self.settings)):
            pid = app.pid_file(self.settings).live_pid()
            if pid is not None:
                stop_pid(pid, app.stop_timeout)
                app.pid_file(self.settings).path.unlink(missing_ok=True)
                stopped.append(app.name)
        return stopped

    def start_all(self, env: dict[str, str], ready_timeout: float = 180.0) -> None:
        for app in self.apps:
            if app.port is not None and port_is_open(app.port):
                raise StackError(
                    f"port {app.port} ({app.name}) is in use by another process: set {app.port_var} to a free port"
                )
        for app in self.apps:
            proc = start_detached(app.argv, app.log_path(self.settings), env=app.environment(env), cwd=PROJECT_ROOT)
            app.pid_file(self.settings).write(proc.pid)
            self.started.append((app, proc.pid))
            if app.name == "dagster-code-server":
                self._wait(app, lambda: port_is_open(self.settings.dagster_code_server_port), ready_timeout)
        for app in self.apps:
            if app.ready_url is not None:
                url = app.ready_url
                self._wait(app, lambda url=url: _http_ok(url), ready_timeout)

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

    def dead(self) -> list[str]:
        """Names of started processes that are no longer running."""
        gone = []
        for app, pid in self.started:
            try:
                finished, _ = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                finished = pid
            if finished == pid:
                gone.append(app.name)
        return gone

    def stop_all(self) -> None:
        for app, pid in reversed(self.started):
            stop_pid(pid, app.stop_timeout)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
            app.pid_file(self.settings).path.unlink(missing_ok=True)
        self.started.clear()
