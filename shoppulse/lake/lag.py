"""Ingestion lag measured against the broker, independently of the drain.

The drain reports its own lag, but only while it runs: a dead or hung drain reports nothing, and the
last value it wrote says nothing about now. Here the broker's high watermarks are read directly (one
ListOffsets request) and compared with the offsets the lake has committed, so a stopped drain shows
as growing lag, never as 0.

`IngestWatch` turns successive measurements into a stall verdict: the broker holds messages the lake
does not, and the lake's offsets have not moved for longer than a threshold.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from confluent_kafka import KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec


class BrokerUnavailableError(RuntimeError):
    """The broker did not answer a metadata or ListOffsets request in time."""


@dataclass(frozen=True)
class PartitionLag:
    partition: int
    high_watermark: int
    lake_offset: int
    """Next offset the lake will read (0 when it has read nothing of this partition)."""

    @property
    def lag(self) -> int:
        return max(self.high_watermark - self.lake_offset, 0)


@dataclass(frozen=True)
class LagReport:
    """Per-partition lag of the lake behind the broker, measured at `measured_at` (epoch seconds)."""

    topic: str
    partitions: tuple[PartitionLag, ...]
    measured_at: float

    @property
    def total_lag(self) -> int:
        return sum(p.lag for p in self.partitions)

    @property
    def lake_offsets(self) -> dict[int, int]:
        return {p.partition: p.lake_offset for p in self.partitions}


_ADMINS: dict[str, AdminClient] = {}
_ADMINS_LOCK = threading.Lock()


def _admin(bootstrap_servers: str) -> AdminClient:
    with _ADMINS_LOCK:
        if bootstrap_servers not in _ADMINS:
            _ADMINS[bootstrap_servers] = AdminClient(
                {"bootstrap.servers": bootstrap_servers, "client.id": "shoppulse-lag", "log_level": 0}
            )
        return _ADMINS[bootstrap_servers]


def _forget_admin(bootstrap_servers: str) -> None:
    with _ADMINS_LOCK:
        _ADMINS.pop(bootstrap_servers, None)


def broker_lag(bootstrap_servers: str, topic: str, lake_offsets: dict[int, int], timeout: float) -> LagReport:
    """High watermark, lake offset and lag of every partition of `topic`.

    `lake_offsets` are the lake's committed next offsets (`shoppulse.lake.committed_offsets`); a
    partition missing there counts from 0. Raises BrokerUnavailableError when the broker does not answer
    within `timeout` seconds (the caller reports lag as unknown, never as 0).
    """
    admin = _admin(bootstrap_servers)
    try:
        metadata = admin.list_topics(topic, timeout=timeout)
        described = metadata.topics.get(topic)
        if described is None or described.error is not None or not described.partitions:
            reason = described.error.str() if described is not None and described.error is not None else "not found"
            raise BrokerUnavailableError(f"topic {topic!r} on {bootstrap_servers}: {reason}")
        futures = admin.list_offsets(
            {TopicPartition(topic, p): OffsetSpec.latest() for p in described.partitions}, request_timeout=timeout
        )
        high = {tp.partition: future.result(timeout=timeout).offset for tp, future in futures.items()}
    except KafkaException as exc:
        _forget_admin(bootstrap_servers)  # stale metadata after a broker restart: start afresh next time
        raise BrokerUnavailableError(f"Kafka at {bootstrap_servers} did not answer: {exc}") from exc
    partitions = tuple(
        PartitionLag(partition=p, high_watermark=hw, lake_offset=lake_offsets.get(p, 0))
        for p, hw in sorted(high.items())
    )
    return LagReport(topic=topic, partitions=partitions, measured_at=time.time())


@dataclass(frozen=True)
class IngestVerdict:
    """Whether ingestion is stalled, as of the last observation."""

    stalled: bool
    stalled_seconds: float
    """Seconds the lake has not moved while the broker held newer messages (0 when it is keeping up)."""
    last_progress_at: float | None
    """Epoch seconds when the lake's offsets were last seen moving (or seen caught up)."""


@dataclass
class IngestWatch:
    """Remembers when the lake last made progress, from successive `LagReport`s.

    Invariant: progress = the lake's offsets changed, or the lake had caught up with the broker. The
    first observation starts the clock (a process that just started cannot know of an older stall, so it
    reports one at most `threshold_seconds` late).
    """

    threshold_seconds: float
    _offsets: dict[int, int] | None = None
    _progress_at: float | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def observe(self, report: LagReport) -> IngestVerdict:
        now = report.measured_at
        with self._lock:
            offsets = report.lake_offsets
            if self._offsets != offsets or report.total_lag == 0 or self._progress_at is None:
                self._progress_at = now
            self._offsets = offsets
            return self._verdict(now, report.total_lag)

    def _verdict(self, now: float, lag: int) -> IngestVerdict:
        assert self._progress_at is not None
        waited = max(now - self._progress_at, 0.0) if lag > 0 else 0.0
        return IngestVerdict(
            stalled=waited > self.threshold_seconds,
            stalled_seconds=round(waited, 3),
            last_progress_at=self._progress_at,
        )
