"""Detached service processes tracked by pid files: start, identify, stop, and port checks."""

from __future__ import annotations

import contextlib
import ctypes
import os
import resource
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from shoppulse.stack.errors import StackError


def port_is_open(port: int, host: str = "127.0.0.1", timeout: float = 0.3) -> bool:
    """True when something accepts TCP connections on host:port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        return sock.connect_ex((host, port)) == 0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _stat_fields(pid: int | str) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name (index 0 is the state), or None when gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None


def process_cmdline(pid: int) -> str | None:
    """The command line of a live process, or None when it does not exist (or is a zombie)."""
    fields = _stat_fields(pid)
    if fields is None or fields[0] == "Z":
        return None
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return raw.replace(b"\0", b" ").decode(errors="replace").strip()


def child_pids(pid: int) -> list[int]:
    """Pids of the live direct children of `pid`."""
    return [
        int(entry.name)
        for entry in Path("/proc").iterdir()
        if entry.name.isdigit() and (fields := _stat_fields(entry.name)) is not None and fields[1] == str(pid)
    ]


def cpu_seconds(pid: int, with_children: bool = False) -> float | None:
    """User + system CPU time a live process has used so far (all its threads), or None when it is gone.

    `with_children` adds its children's: the live ones' and the exited ones' it has reaped (a server
    such as PostgreSQL runs each connection in a child process that may end at any time).
    """
    fields = _stat_fields(pid)
    if fields is None:
        return None
    ticks = int(fields[11]) + int(fields[12])
    if with_children:
        ticks += int(fields[13]) + int(fields[14])
        for child in child_pids(pid):
            if (fields := _stat_fields(child)) is not None:  # it may have exited in between
                ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def _machine_ticks() -> tuple[int, int]:
    """(busy, total) jiffies of all cores since boot."""
    user, nice, system, idle, iowait, irq, softirq, steal = map(int, Path("/proc/stat").read_text().split()[1:9])
    busy = user + nice + system + irq + softirq + steal
    return busy, busy + idle + iowait


def _own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@dataclass
class CpuMeter:
    """CPU used while a block runs, for benchmarks: this process (all threads), the `watched` processes
    (name -> pid, each with its children), and the share of all cores that was busy."""

    watched: Mapping[str, int | None]
    process_s: float = 0.0
    watched_s: dict[str, float | None] = field(default_factory=dict)
    machine_busy: float = 0.0
    _before: dict[str, float | None] = field(default_factory=dict, repr=False)
    _ticks: tuple[int, int] = (0, 0)

    def _watched_now(self) -> dict[str, float | None]:
        return {name: cpu_seconds(pid, with_children=True) if pid else None for name, pid in self.watched.items()}

    def __enter__(self) -> CpuMeter:
        self.process_s = _own_cpu_seconds()
        self._before = self._watched_now()
        self._ticks = _machine_ticks()
        return self

    def __exit__(self, *exc: object) -> None:
        self.process_s = _own_cpu_seconds() - self.process_s
        after = self._watched_now()
        self.watched_s = {
            name: None if (before := self._before[name]) is None or (now := after[name]) is None else now - before
            for name in self.watched
        }
        busy, total = _machine_ticks()
        self.machine_busy = (busy - self._ticks[0]) / max(total - self._ticks[1], 1)


def wait_until(check: Callable[[], bool], timeout: float, interval: float = 0.2) -> bool:
    """Poll `check` until it returns True or `timeout` seconds pass."""
    deadline = time.monotonic() + timeout
    while True:
        if check():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


@dataclass(frozen=True)
class PidFile:
    """A pid file plus the marker that must appear in the process's command line.

    The marker (e.g. the config file path) keeps a recycled pid from being mistaken for our process.
    """

    path: Path
    marker: str

    def read(self) -> int | None:
        try:
            return int(self.path.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None

    def live_pid(self) -> int | None:
        """The pid when its process is alive and is ours; removes a stale file and returns None."""
        pid = self.read()
        if pid is None:
            if self.path.exists():
                self.path.unlink()
            return None
        cmdline = process_cmdline(pid)
        if cmdline is None or self.marker not in cmdline:
            self.path.unlink(missing_ok=True)
            return None
        return pid

    def write(self, pid: int) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(f"{pid}\n")


PR_SET_PDEATHSIG = 1
try:
    _PRCTL = ctypes.CDLL(None, use_errno=True).prctl  # resolved here: the child must not dlopen after fork
except (OSError, AttributeError):  # not Linux
    _PRCTL = None


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when the parent dies (Linux PR_SET_PDEATHSIG; no-op elsewhere)."""
    if _PRCTL is not None:
        _PRCTL(PR_SET_PDEATHSIG, signal.SIGTERM)


def start_detached(
    argv: Sequence[str],
    log_path: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    die_with_parent: bool = False,
) -> subprocess.Popen[bytes]:
    """Start a process in its own session and process group (pgid = its pid), stdout+stderr appended to
    `log_path`. It survives the caller unless `die_with_parent` (then it gets SIGTERM when the caller dies)."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        try:
            return subprocess.Popen(
                list(argv),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=dict(env) if env is not None else None,
                cwd=cwd,
                start_new_session=True,
                preexec_fn=_die_with_parent if die_with_parent else None,
            )
        except FileNotFoundError as exc:
            raise StackError(f"cannot start {argv[0]}: not found") from exc


def stop_pid(pid: int, timeout: float, sig: int = signal.SIGTERM) -> bool:
    """Signal `pid` (gracefully), wait up to `timeout`, then SIGKILL. True if it was running."""
    if process_cmdline(pid) is None:
        return False
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)
    if not wait_until(lambda: process_cmdline(pid) is None, timeout):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        wait_until(lambda: process_cmdline(pid) is None, 10)
    return True


def tail(path: Path, lines: int = 20) -> str:
    """The last `lines` lines of a text file ('' when it does not exist)."""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - 64 * 1024))
            data = handle.read().decode(errors="replace")
    except FileNotFoundError:
        return ""
    return "\n".join(data.splitlines()[-lines:])
