"""Sending messages: an idempotent Kafka producer (acks=all), or a dry-run / in-memory sink.

Messages are keyed by session id, so a session's events keep their order within a partition
(murmur2, the Java client's partitioner, so every client agrees on a key's partition). The
producer is idempotent: librdkafka's retries never duplicate or reorder a partition's messages;
duplicates in the topic are only the ones the fault injector sends on purpose.

The timestamp is passed positionally (7th argument: after partition, callback and on_delivery):
keyword arguments cost about as much as the rest of the call.

Delivery reports are counted from librdkafka's per-message callbacks. In the fast path
(``delivery.report.only.error``) only failures call back; every message librdkafka accepted and did
not report as failed by the end of a successful flush was delivered.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from dataclasses import dataclass, field
from itertools import repeat, starmap
from typing import Protocol

from confluent_kafka import KafkaError, Producer

from shoppulse.observability.metrics import pipeline_metrics

log = logging.getLogger(__name__)

FAST_CONFIG: dict[str, object] = {
    "compression.type": "lz4",
    "linger.ms": 50,
    "batch.size": 2_000_000,
    "queue.buffering.max.messages": 2_000_000,
    "queue.buffering.max.kbytes": 2_000_000,
}
"""Throughput settings for burst/history: big compressed batches, a deep local queue."""

PRODUCE_CHUNK = 1_000
"""Messages per C-level produce loop. The loop never gives up the GIL (no bytecode runs inside it), so
long chunks starve the generator thread, which needs the GIL back after each numpy/Polars call; about
1 ms per chunk (then poll(0), which releases the GIL) measured well ahead of 20,000 on 2 cores."""

LIVE_CONFIG: dict[str, object] = {"compression.type": "lz4", "linger.ms": 10}
"""Live traffic: small batches, low latency."""


class Sink(Protocol):
    """Where messages go."""

    def send(self, values: list, keys: list, timestamps: list, stop: threading.Event | None = None) -> int:
        """Send messages in order; returns how many were handed over (fewer if `stop` was set)."""
        ...

    def poll(self) -> None: ...

    def flush(self, timeout: float) -> int:
        """Wait for outstanding deliveries; returns how many are still outstanding."""
        ...

    def stats(self) -> DeliveryStats: ...


@dataclass
class DeliveryStats:
    """Messages handed to the producer, delivered, failed (with the first errors), still outstanding."""

    produced: int = 0
    delivered: int = 0
    failed: int = 0
    outstanding: int = 0
    errors: list[str] = field(default_factory=list)


class KafkaSink:
    """Idempotent, acks=all producer to one topic."""

    def __init__(
        self,
        bootstrap_servers: str,
        topic: str,
        fast: bool = True,
        every_report: bool = False,
        extra_config: dict[str, object] | None = None,
    ) -> None:
        self.topic = topic
        self.every_report = every_report
        self._failed = 0
        self._delivered = 0
        self._errors: list[str] = []
        self._produced = 0
        self._outstanding = 0
        self._flushed = False
        config: dict[str, object] = {
            "bootstrap.servers": bootstrap_servers,
            "enable.idempotence": True,
            "acks": "all",
            "partitioner": "murmur2_random",
            "message.max.bytes": 4_000_000,
            "on_delivery": self._on_delivery,
            "delivery.report.only.error": not every_report,
            "client.id": "shoppulse-simulator",
            **(FAST_CONFIG if fast else LIVE_CONFIG),
            **(extra_config or {}),
        }
        self.producer = Producer(config)
        metrics = pipeline_metrics()
        self._count_sent = metrics.simulator_sent.inc
        self._delivery_errors = metrics.simulator_delivery_errors

    def _on_delivery(self, err: KafkaError | None, msg: object) -> None:
        if err is None:
            self._delivered += 1
            return
        self._failed += 1
        self._delivery_errors.labels(err.name()).inc()
        if len(self._errors) < 10:
            self._errors.append(str(err))
        if err.fatal():
            log.error("fatal producer error: %s", err)

    def send(self, values: list, keys: list, timestamps: list, stop: threading.Event | None = None) -> int:
        """Produce in order, waiting for queue space when the local queue is full."""
        if not len(values) == len(keys) == len(timestamps):
            raise ValueError("values, keys and timestamps must have the same length")
        produce, poll, topic = self.producer.produce, self.producer.poll, self.topic
        begin, total, step = 0, len(values), PRODUCE_CHUNK
        while begin < total:
            if stop is not None and stop.is_set():
                break
            end = min(begin + step, total)
            pending_values = iter(values[begin:end])
            try:
                # The hot loop runs in C (no bytecode per message, so the GIL is free for the generator):
                # produce(topic, value, key, partition=-1, callback=None, on_delivery=None, timestamp).
                arguments = zip(
                    repeat(topic), pending_values, keys[begin:end], repeat(-1), repeat(None), repeat(None),
                    timestamps[begin:end],
                )  # fmt: skip
                deque(starmap(produce, arguments), maxlen=0)
                begin = end
            except BufferError:
                # The local queue is full: the message that raised was taken from `pending_values` but not
                # queued. Resume from it once librdkafka has made room.
                begin = end - pending_values.__length_hint__() - 1
                poll(0.05)
            poll(0)
        self._produced += begin
        self._count_sent(begin)
        return begin

    def poll(self) -> None:
        self.producer.poll(0)

    def flush(self, timeout: float) -> int:
        self._outstanding = self.producer.flush(timeout)
        self._flushed = True
        return self._outstanding

    def stats(self) -> DeliveryStats:
        outstanding = self._outstanding if self._flushed else len(self.producer)
        # With only failures reported, everything else handed over and not still queued was delivered.
        delivered = self._delivered if self.every_report else self._produced - self._failed - outstanding
        return DeliveryStats(
            produced=self._produced,
            delivered=delivered,
            failed=self._failed,
            outstanding=outstanding,
            errors=list(self._errors),
        )


class MemorySink:
    """Keeps every message (for tests and `--dry-run --output`)."""

    def __init__(self, keep: bool = True) -> None:
        self.keep = keep
        self.values: list[str | bytes] = []
        self.keys: list[str] = []
        self.timestamps: list[int] = []
        self._count = 0

    def send(self, values: list, keys: list, timestamps: list, stop: threading.Event | None = None) -> int:
        if stop is not None and stop.is_set():
            return 0
        if self.keep:
            self.values.extend(values)
            self.keys.extend(keys)
            self.timestamps.extend(timestamps)
        self._count += len(values)
        return len(values)

    def poll(self) -> None:
        return None

    def flush(self, timeout: float) -> int:
        return 0

    def stats(self) -> DeliveryStats:
        return DeliveryStats(produced=self._count, delivered=self._count)

    def messages(self) -> list[tuple[bytes, bytes, int]]:
        """(value, key, timestamp) as bytes, the way a consumer would see them."""
        return [
            (v.encode() if isinstance(v, str) else v, k.encode(), t)
            for v, k, t in zip(self.values, self.keys, self.timestamps, strict=True)
        ]
