"""Live mode's ground truth (tiny, often empty batches merged incrementally) for any seed and rate."""

from __future__ import annotations

import pytest

from simulator import run as simulator_run
from simulator.faults import FaultConfig
from simulator.ground_truth import GroundTruth
from simulator.producer import MemorySink
from simulator.run import Runner, live_plan
from simulator.stream import Stream
from tests.simulator.conftest import END_MS, HORIZON_MS, MAX_EVENT_BYTES
from tests.simulator.oracle import recompute

SIMULATED_SECONDS = 10
TICK_MS = 20
"""The fake clock advances as much per tick as the real live loop sleeps (LIVE_TICK_S): tiny batches."""


@pytest.mark.parametrize(("seed", "rate"), [(1, 100.0), (2, 100.0), (3, 100.0), (4, 5.0), (5, 500.0)])
def test_live_ground_truth_equals_recomputation(seed: int, rate: float, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(simulator_run, "LIVE_TICK_S", 0.0)  # the fake clock makes the ticks
    plan = live_plan(seed, END_MS, rate, seasonal=False, products=5_000)
    sink = MemorySink()
    truth = GroundTruth(run={"seed": seed})
    runner = Runner(Stream(plan, FaultConfig()), sink, "live", None, truth, progress=False)
    ticks = iter(range(10**9))

    def clock_ms() -> int:
        now = END_MS + next(ticks) * TICK_MS
        if now >= END_MS + SIMULATED_SECONDS * 1000:
            runner.stop.event.set()
        return now

    result = runner.run_live(clock_ms=clock_ms)
    assert result.events > 0
    oracle = recompute([(value, ts) for value, _, ts in sink.messages()], HORIZON_MS, MAX_EVENT_BYTES)
    document = truth.result()
    assert document["days"] == oracle["days"]
    assert document["totals"]["events"] == oracle["unique_events"] == result.events
