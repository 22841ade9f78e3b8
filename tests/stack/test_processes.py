"""Process helpers the stack and the benchmarks share."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from shoppulse.stack.processes import cpu_seconds


def test_cpu_seconds_counts_what_a_process_burns_and_none_once_it_is_gone() -> None:
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import time\nend = time.process_time() + 0.5\nwhile time.process_time() < end: pass\ntime.sleep(30)",
        ]
    )
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
