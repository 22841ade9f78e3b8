"""Process helpers the stack and the benchmarks share."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from shoppulse.stack.processes import CpuMeter, child_pids, cpu_seconds, process_cmdline, wait_until

BURN = "import time\nend = time.process_time() + 0.5\nwhile time.process_time() < end: pass"


def test_cpu_seconds_counts_what_a_process_burns_and_none_once_it_is_gone() -> None:
    child = subprocess.Popen([sys.executable, "-c", BURN + "\ntime.sleep(30)"])
    try:
        deadline = time.monotonic() + 20
        used = cpu_seconds(child.pid)
        while used is not None and used < 0.4 and time.monotonic() < deadline:
            time.sleep(0.05)
            used = cpu_seconds(child.pid)
        assert used is not None and 0.4 <= used < 5
    finally:
        child.kill()
        child.wait()
    assert cpu_seconds(child.pid) is None
    assert cpu_seconds(os.getpid()) > 0


def _reaped_children_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[13]) + int(fields[14])) / os.sysconf("SC_CLK_TCK")


def test_cpu_meter_counts_a_watched_servers_exited_children() -> None:
    """Like a PostgreSQL backend: the work happens in a child that exits before the block ends."""
    server = subprocess.Popen(["sh", "-c", f"sleep 0.3; {sys.executable} -c '{BURN}'; sleep 30"])
    try:
        with CpuMeter({"server": server.pid, "nobody": None}) as meter:
            deadline = time.monotonic() + 20
            while _reaped_children_cpu(server.pid) < 0.4 and time.monotonic() < deadline:
                time.sleep(0.05)
        assert meter.watched_s["server"] is not None and 0.4 <= meter.watched_s["server"] < 5
        assert meter.watched_s["nobody"] is None
        assert 0 <= meter.process_s < 0.4  # this process only waited
        assert 0 < meter.machine_busy <= 1
        assert wait_until(lambda: len(child_pids(server.pid)) == 1, timeout=10)  # the burner has exited
        [sleeper] = child_pids(server.pid)
        assert (process_cmdline(sleeper) or "").startswith("sleep")
    finally:
        server.kill()
        server.wait()
