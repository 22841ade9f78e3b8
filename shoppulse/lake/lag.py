"""How far the lake is behind the broker, per partition, measured against the broker itself.

Independent of the drain: it asks the broker for each partition's high watermark (one ListOffsets
request) and compares it with the offsets the lake says it holds. A drain that has stalled, or a
sensor that no longer ticks, shows here as a growing lag.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from confluent_kafka import KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec


@dataclass(frozen=True)
class PartitionLag:
    """One partition: the broker's next offset, the lake's next offset and their difference (>= 0)."""

    partition: int
    high_watermark: int
    lake_offset: int

    @property
    def lag(self) -> int:
        return max(self.high_watermark - self.lake_offset, 0)


_admins: dict[str, AdminClient] = {}
_admins_lock = threading.Lock()


def _admin(bootstrap_servers: str) -> AdminClient:
    with _admins_lock:
        admin = _admins.get(bootstrap_servers)
        if admin is None:
            admin = _admins[bootstrap_servers] = AdminClient({"bootstrap.servers": bootstrap_servers})
        return admin


def _forget(bootstrap_servers: str) -> None:
    with _admins_lock:
        _admins.pop(bootstrap_servers, None)


def broker_lag(bootstrap_servers: str, topic: str, lake_offsets: dict[int, int], timeout: float) -> list[PartitionLag]:
    """Per partition of `topic` (ascending): high watermark, lake offset (0 when absent) and lag.

    Raises KafkaException (or TimeoutError) when the broker cannot answer within `timeout` seconds.
    """
    admin = _admin(bootstrap_servers)
    try:
        metadata = admin.list_topics(topic, timeout=timeout).topics[topic]
        if metadata.error is not None:
            raise KafkaException(metadata.error)
        futures = admin.list_offsets(
            {TopicPartition(topic, p): OffsetSpec.latest() for p in sorted(metadata.partitions)},
            request_timeout=timeout,
        )
        watermarks = {tp.partition: future.result(timeout=timeout).offset for tp, future in futures.items()}
    except (KafkaException, TimeoutError):
        _forget(bootstrap_servers)  # stale metadata (e.g. a restarted broker): a fresh client next time
        raise
    return [PartitionLag(p, hw, lake_offsets.get(p, 0)) for p, hw in sorted(watermarks.items())]
