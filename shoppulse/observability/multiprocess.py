"""Metrics of many processes in one directory, none lost when a process exits.

prometheus-client's multiprocess mode (a process started with `PROMETHEUS_MULTIPROC_DIR` set) writes
each process's values to memory-mapped files named after the process; the exporter sums the files.
Named after the pid, a directory fed by a run worker every few seconds would gain files forever.
Here a process names its files after a *slot* instead: the first free `slot-N.lock` in the directory,
held with `flock` for the process's lifetime (the kernel releases it when the process exits, crash
included). The next process to take the slot reopens its files and continues from the values in them,
so a counter keeps every increment of every exited run worker, and the directory holds one set of
files per process running at the same time.

Gauges use the "max" multiprocess mode (timestamps, versions): they are meaningful across exits too.
"""

from __future__ import annotations

import fcntl
import os
import threading
from pathlib import Path

from prometheus_client import values

ENV_VAR = "PROMETHEUS_MULTIPROC_DIR"
SLOT_PREFIX = "slot-"
MAX_SLOTS = 1024

_lock = threading.Lock()
_slot: tuple[int, int, str] | None = None
"""(pid, descriptor holding the lock, slot name) of the slot this process took."""
_enabled_dir: list[Path] = []


def _take_slot(directory: Path) -> tuple[int, str]:
    """Lock the first free slot file in `directory`; the lock lives as long as the returned descriptor."""
    directory.mkdir(parents=True, exist_ok=True)
    for number in range(MAX_SLOTS):
        fd = os.open(directory / f"{SLOT_PREFIX}{number}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        return fd, f"s{number}"
    raise RuntimeError(f"all {MAX_SLOTS} metric slots in {directory} are held by running processes")


def slot_identifier(directory: Path) -> str:
    """This process's slot name ("s<N>"), taking a free slot on first call in each process (also after fork)."""
    global _slot
    pid = os.getpid()
    with _lock:
        if _slot is not None and _slot[0] == pid:
            return _slot[2]
        fd, name = _take_slot(directory)  # a forked child's inherited lock is its parent's: take its own
        _slot = (pid, fd, name)
        return name


def enable(directory: Path) -> None:
    """Switch this process's prometheus-client values to slot files in `directory` (idempotent).

    Must run before the process creates the metrics that should be shared (pipeline_metrics() does).
    """
    directory = Path(directory)
    if _enabled_dir and _enabled_dir[0] == directory:
        return
    directory.mkdir(parents=True, exist_ok=True)
    os.environ[ENV_VAR] = str(directory)
    values.ValueClass = values.MultiProcessValue(lambda: slot_identifier(directory))
    _enabled_dir[:] = [directory]


def enable_from_environment() -> Path | None:
    """Enable slot files when this process was started with `PROMETHEUS_MULTIPROC_DIR`; the directory or None."""
    directory = os.environ.get(ENV_VAR)
    if not directory:
        return None
    enable(Path(directory))
    return Path(directory)


def enabled_directory() -> Path | None:
    return _enabled_dir[0] if _enabled_dir else None
