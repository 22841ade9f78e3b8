"""Running the simulator: live (paced to the wall clock), burst (N events at full speed), history.

Burst and history generate in a background thread (numpy and Polars release the GIL) while the
calling thread produces, so generation overlaps with sending. Live mode releases messages when the
wall clock reaches their send time. SIGINT / SIGTERM stop a run: no new message is sent, the
producer is flushed, and the counts and ground truth describe exactly the messages that were sent.
"""

from __future__ import annotations

import contextlib
import logging
import math
import queue
import signal
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from tqdm import tqdm

from simulator.faults import KIND_EVENT, FaultConfig
from simulator.ground_truth import GroundTruth
from simulator.model import DAY_MS, MINUTE_MS
from simulator.producer import DeliveryStats, Sink
from simulator.stream import Stream, TrafficPlan, WireBatch, events_per_session, sessions_per_ms_for

log = logging.getLogger(__name__)

WIRE_SLICE = 20_000
"""Messages turned into Python objects at a time (small enough to stay in the CPU cache until sent)."""
LIVE_TICK_S = 0.02
LIVE_WARMUP_MS = 10 * MINUTE_MS
LIVE_WARMUP_MAX_EVENTS = 1_000_000
"""Live mode starts the shop up to LIVE_WARMUP_MS before now (and drops those events): sessions are
already in progress at the start, so the event rate is right from the first second. At high rates
the warm-up is shorter, so it never generates more than LIVE_WARMUP_MAX_EVENTS."""
LIVE_WINDOW_S = 30.0
LIVE_STATUS_EVERY_S = 60.0


@dataclass
class RunResult:
    """What a run sent and how delivery went."""

    mode: str
    seed: int
    topic: str | None
    messages: int = 0
    events: int = 0
    elapsed_s: float = 0.0
    stopped: bool = False
    delivery: DeliveryStats = field(default_factory=DeliveryStats)
    first_event_ms: int | None = None
    last_event_ms: int | None = None

    @property
    def ok(self) -> bool:
        return self.delivery.failed == 0 and self.delivery.outstanding == 0

    def summary(self) -> dict[str, Any]:
        rate = self.messages / self.elapsed_s if self.elapsed_s > 0 else 0.0
        return {
            **{k: v for k, v in asdict(self).items() if k != "delivery"},
            "messages_per_s": round(rate, 1),
            "events_per_s": round(self.events / self.elapsed_s, 1) if self.elapsed_s > 0 else 0.0,
            "delivery": asdict(self.delivery),
            "ok": self.ok,
        }


class StopSignal:
    """Set by SIGINT/SIGTERM (the first one stops gracefully; a second one interrupts the flush)."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: object) -> None:
        if self.event.is_set():
            signal.signal(signum, signal.SIG_DFL)
            raise KeyboardInterrupt
        log.warning("received %s: stopping, flushing the producer", signal.Signals(signum).name)
        self.event.set()

    @contextlib.contextmanager
    def installed(self) -> Iterator[StopSignal]:
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        for signum in (signal.SIGINT, signal.SIGTERM):
            self._previous[signum] = signal.signal(signum, self._handle)
        try:
            yield self
        finally:
            for signum, handler in self._previous.items():
                signal.signal(signum, handler)


def burst_plan(seed: int, events: int, end_ms: int, days: float, products: int) -> TrafficPlan:
    """Sessions spread over the `days` before `end_ms`, a little more traffic than `events` needs."""
    start_ms = end_ms - int(days * DAY_MS)
    margin = 1.25 + 3.0 / math.sqrt(max(events, 1))
    rate = sessions_per_ms_for(events * margin, start_ms, end_ms, seed, products)
    return TrafficPlan(
        seed=seed,
        start_ms=start_ms,
        sessions_per_ms=rate,
        products=products,
        initial_users=_initial_users(rate),
    )


def history_plan(seed: int, end_ms: int, days: float, events_per_day: float, products: int) -> TrafficPlan:
    """`days` of traffic ending at `end_ms`, `events_per_day` on average."""
    start_ms = end_ms - int(days * DAY_MS)
    rate = sessions_per_ms_for(events_per_day * days, start_ms, end_ms, seed, products)
    return TrafficPlan(
        seed=seed, start_ms=start_ms, sessions_per_ms=rate, products=products, initial_users=_initial_users(rate)
    )


def live_plan(seed: int, now_ms: int, rate: float, seasonal: bool, products: int) -> TrafficPlan:
    """Traffic averaging `rate` events/s (exactly that when not seasonal), starting before now."""
    start_ms = now_ms - int(min(LIVE_WARMUP_MS, LIVE_WARMUP_MAX_EVENTS / rate * 1000))
    if seasonal:
        # the average multiplier over the coming week, promotions included
        per_ms = sessions_per_ms_for(rate * 7 * 86_400, now_ms, now_ms + 7 * DAY_MS, seed, products, seasonal=True)
    else:
        per_ms = rate / 1000.0 / events_per_session(products, seasonal=False)
    return TrafficPlan(
        seed=seed,
        start_ms=start_ms,
        sessions_per_ms=per_ms,
        seasonal=seasonal,
        products=products,
        initial_users=_initial_users(per_ms),
        batch_events=max(1, int(rate * LIVE_WINDOW_S)),
    )


def _initial_users(sessions_per_ms: float) -> int:
    """Users known before the run starts: about 60% of a day's sessions."""
    return int(np.clip(0.6 * sessions_per_ms * DAY_MS, 1_000, 5_000_000))


def count_events(frame: pl.DataFrame) -> int:
    return int((frame["kind"] == KIND_EVENT).sum())


def truncate_to_events(frame: pl.DataFrame, budget: int) -> pl.DataFrame:
    """The prefix of `frame` that holds exactly `budget` events (or all of it if it has fewer)."""
    is_event = (frame["kind"] == KIND_EVENT).to_numpy()
    seen = np.cumsum(is_event)
    if len(seen) == 0 or seen[-1] <= budget:
        return frame
    return frame.head(int(np.searchsorted(seen, budget, side="left")) + 1)


class Runner:
    """Drives a stream into a sink, with progress, stop handling, counts and ground truth."""

    def __init__(
        self,
        stream: Stream,
        sink: Sink,
        mode: str,
        topic: str | None,
        ground_truth: GroundTruth | None = None,
        progress: bool | None = None,
        stop: StopSignal | None = None,
        flush_timeout_s: float = 60.0,
    ) -> None:
        self.stream = stream
        self.sink = sink
        self.ground_truth = ground_truth
        self.progress_enabled = sys.stderr.isatty() if progress is None else progress
        self.stop = stop or StopSignal()
        self.flush_timeout_s = flush_timeout_s
        self.result = RunResult(mode=mode, seed=stream.plan.seed, topic=topic)

    # --- common --------------------------------------------------------------------------------
    def _send(self, batch: WireBatch, bar: tqdm | None) -> bool:
        """Send a batch; account for what was sent. False when a stop cut it short."""
        sent = self.sink.send(batch.values, batch.keys, batch.timestamps, self.stop.event)
        frame = batch.frame if sent == len(batch) else batch.frame.head(sent)
        events = count_events(frame)
        self.result.messages += sent
        self.result.events += events
        if frame.height:
            event_ts = frame.filter(pl.col("kind") == KIND_EVENT)["event_ts"]
            if event_ts.len():
                low, high = int(event_ts.min()), int(event_ts.max())  # type: ignore[arg-type]
                first, last = self.result.first_event_ms, self.result.last_event_ms
                self.result.first_event_ms = low if first is None else min(first, low)
                self.result.last_event_ms = high if last is None else max(last, high)
        if self.ground_truth is not None:
            self.ground_truth.add(frame)
        if bar is not None:
            bar.update(events)
            bar.set_postfix(messages=f"{self.result.messages:,}", refresh=False)
        return sent == len(batch)

    def _finish(self, started: float) -> RunResult:
        self.result.elapsed_s = time.monotonic() - started
        remaining = self.sink.flush(self.flush_timeout_s)
        if remaining:
            log.error("%d messages were not delivered within %.0f s", remaining, self.flush_timeout_s)
        self.result.delivery = self.sink.stats()
        self.result.stopped = self.stop.event.is_set()
        return self.result

    def _bar(self, total: int | None, unit: str = " ev") -> tqdm | None:
        if not self.progress_enabled:
            return None
        return tqdm(total=total, unit=unit, unit_scale=True, dynamic_ncols=True, smoothing=0.1, file=sys.stderr)

    # --- burst and history ---------------------------------------------------------------------
    def run_until(self, end_ms: int, max_events: int | None = None) -> RunResult:
        """Send every message up to `end_ms` (or the first `max_events` events), as fast as possible."""
        batches: queue.Queue[WireBatch | BaseException | None] = queue.Queue(maxsize=4)
        halt = threading.Event()

        def put(item: WireBatch | BaseException | None) -> None:
            while not halt.is_set():
                try:
                    batches.put(item, timeout=0.1)
                    return
                except queue.Full:
                    continue

        def generate() -> None:
            budget = max_events
            try:
                t = self.stream.generated_until
                while not halt.is_set() and not self.stop.event.is_set():
                    t_next = min(t + self.stream.window_ms, end_ms)
                    frame = self.stream.advance(t_next)
                    if budget is not None:
                        frame = truncate_to_events(frame, budget)
                        budget -= count_events(frame)
                    # Python objects are made in slices, just ahead of the producer: still in cache when sent.
                    for begin in range(0, frame.height, WIRE_SLICE):
                        put(WireBatch.of(frame.slice(begin, WIRE_SLICE)))
                    if t_next >= end_ms or budget == 0:
                        break
                    t = t_next
            except BaseException as exc:  # surfaced in the sending thread
                put(exc)
            finally:
                put(None)

        started = time.monotonic()
        worker = threading.Thread(target=generate, name="simulator-generate", daemon=True)
        bar = self._bar(max_events)
        with self.stop.installed():
            worker.start()
            try:
                while True:
                    item = batches.get()
                    if item is None:
                        break
                    if isinstance(item, BaseException):
                        raise item
                    if not self._send(item, bar) or self.stop.event.is_set():
                        break
            finally:
                halt.set()
                worker.join(timeout=30)
                if bar is not None:
                    bar.close()
            return self._finish(started)

    # --- live ----------------------------------------------------------------------------------
    def run_live(self, duration_s: float | None = None, clock_ms: Any = None) -> RunResult:
        """Send messages as the wall clock reaches their send time, until stopped (or `duration_s`)."""
        now_ms = clock_ms or (lambda: time.time_ns() // 1_000_000)
        # Warm-up: sessions already in progress. Twice, so what fell due while generating is dropped too.
        skipped = self.stream.advance(now_ms()).height
        skipped += self.stream.advance(now_ms()).height
        log.info("live: warm-up generated %d messages before now (not sent)", skipped)
        started = time.monotonic()
        last_status = started
        bar = self._bar(None)
        with self.stop.installed():
            try:
                while not self.stop.event.is_set():
                    frame = self.stream.advance(now_ms() + 1)
                    if frame.height and not self._send(WireBatch.of(frame), bar):
                        break
                    self.sink.poll()
                    elapsed = time.monotonic() - started
                    if duration_s is not None and elapsed >= duration_s:
                        break
                    if bar is None and time.monotonic() - last_status >= LIVE_STATUS_EVERY_S:
                        last_status = time.monotonic()
                        log.info(
                            "live: %d messages, %d events in %.0f s (%.1f events/s)",
                            self.result.messages,
                            self.result.events,
                            elapsed,
                            self.result.events / max(elapsed, 1e-9),
                        )
                    self.stop.event.wait(LIVE_TICK_S)
            finally:
                if bar is not None:
                    bar.close()
            return self._finish(started)


def write_ground_truth(ground_truth: GroundTruth, path: Path, result: RunResult) -> None:
    ground_truth.run.update({"messages_sent": result.messages, "events_sent": result.events, "stopped": result.stopped})
    ground_truth.write(path)
    log.info("ground truth written to %s", path)


def describe_plan(plan: TrafficPlan, faults: FaultConfig) -> dict[str, Any]:
    return {
        "seed": plan.seed,
        "start_ms": plan.start_ms,
        "sessions_per_ms": plan.sessions_per_ms,
        "seasonal": plan.seasonal,
        "products": plan.products,
        "initial_users": plan.initial_users,
        "faults": faults.describe(),
        "incidents": [incident.describe() for incident in plan.incidents],
    }
