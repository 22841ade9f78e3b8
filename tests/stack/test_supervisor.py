"""The `make run` supervisor with real (tiny) processes: restart with backoff and a count, the dead
process's group killed first, crash-loop limit, a finished simulator left alone, no orphan survives."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from shoppulse.settings import Settings
from shoppulse.stack.apps import AppProcess, CrashLoopError, Supervisor, read_supervisor_status
from shoppulse.stack.processes import child_pids, process_cmdline, wait_until

SLEEPER = "import time; time.sleep(600)"
PARENT_OF_SLEEPER = "import subprocess, time; subprocess.Popen(['sleep', '600']); time.sleep(600)"


def settings_for(home: Path, **overrides: object) -> Settings:
    return Settings(home=home, supervisor_backoff_max_seconds=0.2, **overrides)


def supervise_until(supervisor: Supervisor, condition, timeout: float = 30) -> bool:  # type: ignore[no-untyped-def]
    def step() -> bool:
        supervisor.supervise()
        return condition()

    return wait_until(step, timeout, interval=0.05)


def test_a_killed_process_is_restarted_with_its_group_gone_and_counted(tmp_path: Path) -> None:
    app = AppProcess("worker", (sys.executable, "-c", PARENT_OF_SLEEPER))
    messages: list[tuple[str, bool]] = []
    supervisor = Supervisor(settings_for(tmp_path), [app], report=lambda m, loud: messages.append((m, loud)))
    supervisor.start_all(dict(os.environ))
    try:
        first = supervisor.states["worker"].pid
        assert first is not None
        assert wait_until(lambda: child_pids(first) != [], 10)
        grandchild = child_pids(first)[0]
        os.kill(first, signal.SIGKILL)
        state = supervisor.states["worker"]
        assert supervise_until(supervisor, lambda: state.pid not in (None, first))
        assert wait_until(lambda: process_cmdline(grandchild) is None, 10), "the dead process's child survived it"
        assert state.restarts == 1 and state.last_exit == "killed by SIGKILL"
        status = read_supervisor_status(supervisor.settings)
        assert status is not None and status["apps"]["worker"]["restarts"] == 1
        assert any("worker" in m and "died: killed by SIGKILL" in m and loud for m, loud in messages)
        assert "restarting worker (restart #1)" in app.log_path(supervisor.settings).read_text()
    finally:
        supervisor.stop_all()
    assert read_supervisor_status(supervisor.settings) is None


def test_a_process_that_keeps_dying_stops_the_run_with_the_reason(tmp_path: Path) -> None:
    app = AppProcess("crasher", (sys.executable, "-c", "import sys; print('boom'); sys.exit(3)"))
    settings = settings_for(tmp_path, supervisor_crash_loop_restarts=2, supervisor_crash_loop_window_seconds=60)
    supervisor = Supervisor(settings, [app])
    supervisor.start_all(dict(os.environ), ready_timeout=5)
    try:
        with pytest.raises(CrashLoopError) as caught:
            supervise_until(supervisor, lambda: False)
    finally:
        supervisor.stop_all()
    message = str(caught.value)
    assert message.startswith("crasher keeps dying: 3 exits within 60s")
    assert "exit code 3" in message and "boom" in message
    assert supervisor.states["crasher"].restarts == 2


def test_a_simulator_that_finished_is_not_restarted(tmp_path: Path) -> None:
    app = AppProcess("simulator", (sys.executable, "-c", "pass"))
    supervisor = Supervisor(settings_for(tmp_path), [app])
    supervisor.start_all(dict(os.environ))
    state = supervisor.states["simulator"]
    assert supervise_until(supervisor, lambda: state.finished)
    supervisor.supervise()
    assert state.pid is None and state.restarts == 0 and state.state == "finished"
    status = json.loads((tmp_path / "run" / "supervisor.json").read_text())
    assert status["apps"]["simulator"]["state"] == "finished"
    supervisor.stop_all()


def test_apps_die_with_their_supervisor(tmp_path: Path) -> None:
    """PR_SET_PDEATHSIG: a supervisor killed with -9 leaves no app behind."""
    script = (
        "import os, sys, time\n"
        "from pathlib import Path\n"
        "from shoppulse.stack.processes import start_detached\n"
        f"proc = start_detached([sys.executable, '-c', {SLEEPER!r}], Path({str(tmp_path / 'log')!r}),"
        " die_with_parent=True)\n"
        "print(proc.pid, flush=True)\n"
        "time.sleep(600)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        app_pid = int(parent.stdout.readline())
        assert process_cmdline(app_pid) is not None
        parent.kill()
        parent.wait()
        assert wait_until(lambda: process_cmdline(app_pid) is None, 10), "the app outlived its supervisor"
    finally:
        if parent.poll() is None:
            parent.kill()
