"""Simulator traffic for other benchmarks (e.g. bench/ingest.py): burst batches of keys and values."""

from __future__ import annotations

import time
from collections.abc import Iterator

from simulator.faults import TYPICAL_FAULTS, FaultConfig
from simulator.run import burst_plan, count_events, truncate_to_events
from simulator.stream import Stream, WireBatch


def burst_batches(
    events: int, seed: int = 0, faults: FaultConfig | None = None, days: float = 1.0, end_ms: int | None = None
) -> Iterator[WireBatch]:
    """Exactly `events` events (plus fault messages) spread over the `days` before `end_ms` (default now)."""
    end_ms = end_ms if end_ms is not None else time.time_ns() // 1_000_000
    stream = Stream(burst_plan(seed, events, end_ms, days, products=5_000), faults or FaultConfig())
    budget = events
    t = stream.generated_until
    while budget > 0 and t < end_ms:
        t = min(t + stream.window_ms, end_ms)
        frame = truncate_to_events(stream.advance(t), budget)
        budget -= count_events(frame)
        if frame.height:
            yield WireBatch.of(frame)


def burst_messages(events: int, seed: int = 0, faults: bool = False) -> Iterator[tuple[list[str], list[str | bytes]]]:
    """(keys, values) batches of a burst of `events` events; `faults` uses the typical fault mix."""
    for batch in burst_batches(events, seed, TYPICAL_FAULTS if faults else None):
        yield batch.keys, batch.values
