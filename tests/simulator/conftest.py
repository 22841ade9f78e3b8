"""Simulator runs shared by the tests: generated once per session into memory, with a fixed clock."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from simulator.faults import FaultConfig
from simulator.ground_truth import GroundTruth
from simulator.model import HOUR_MS
from simulator.producer import MemorySink
from simulator.run import Runner, RunResult, burst_plan, history_plan
from simulator.stream import Stream

END_MS = 1_768_435_200_000  # 2026-01-15T00:00:00Z: fixed, so runs are reproducible
HORIZON_MS = 72 * HOUR_MS
MAX_EVENT_BYTES = 65_536

ALL_FAULTS = FaultConfig(
    duplicate_rate=0.02,
    out_of_order_rate=0.03,
    late_rate=0.02,
    late_delay_ms=3 * HOUR_MS,
    late_beyond_share=0.3,
    lateness_horizon_ms=HORIZON_MS,
    malformed_rate=0.01,
    v2_rate=0.05,
    max_event_bytes=MAX_EVENT_BYTES,
)


@dataclass
class SimRun:
    """What a run sent, as a consumer sees it, plus the simulator's own account of it."""

    messages: list[tuple[bytes, bytes, int]]  # (value, key, kafka timestamp ms) in send order
    ground_truth: GroundTruth
    truth: dict[str, Any]
    result: RunResult

    @property
    def values(self) -> list[bytes]:
        return [m[0] for m in self.messages]


def simulate(
    faults: FaultConfig = FaultConfig(),  # noqa: B008 - frozen dataclass, safe as a default
    seed: int = 11,
    days: float = 8.0,
    events_per_day: float = 12_000,
    burst_events: int | None = None,
    end_ms: int = END_MS,
) -> SimRun:
    """Run history (or a burst of `burst_events`) into memory, with ground truth."""
    if burst_events is None:
        plan = history_plan(seed, end_ms, days, events_per_day, products=5_000)
    else:
        plan = burst_plan(seed, burst_events, end_ms, days, products=5_000)
    sink = MemorySink()
    truth = GroundTruth(run={"seed": seed})
    runner = Runner(Stream(plan, faults), sink, "test", None, truth, progress=False)
    result = runner.run_until(end_ms, max_events=burst_events)
    return SimRun(messages=sink.messages(), ground_truth=truth, truth=truth.result(), result=result)


@pytest.fixture(scope="session")
def clean_run() -> SimRun:
    """Eight days of traffic (long enough for refunds, which come 2-30 days after the order), no faults."""
    return simulate()


@pytest.fixture(scope="session")
def faulty_run() -> SimRun:
    """Eight days of traffic with every fault at a few percent."""
    return simulate(ALL_FAULTS)
