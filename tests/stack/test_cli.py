"""`python -m shoppulse.stack run`'s supervision loop and its stop signals."""

from __future__ import annotations

import os
import signal
import time

import pytest

from shoppulse.stack.cli import StopRequestedError, _raise_stop, _watch


class SignalledDuringCheck:
    """A drain watchdog whose check is interrupted by a real signal to this process (as Ctrl-C does
    while a slow check reads a big lake's log)."""

    def __init__(self, signum: int) -> None:
        self.signum = signum

    def check(self) -> None:
        os.kill(os.getpid(), self.signum)
        time.sleep(5)  # the handler raises before this returns
        raise AssertionError("the signal was not delivered")


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_stop_signal_during_a_watchdog_check_stops_the_run(signum: int) -> None:
    previous = signal.signal(signum, _raise_stop)
    try:
        with pytest.raises(StopRequestedError, match=signal.Signals(signum).name):
            _watch(SignalledDuringCheck(signum))  # type: ignore[arg-type]
    finally:
        signal.signal(signum, previous)
