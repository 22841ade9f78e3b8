"""Drain the events topic into the lake: bounded in time and size, effectively once.

One call of :func:`drain`:

1. takes the lake's writer lock (a second, overlapping call returns ``busy`` at once);
2. rolls forward any commit a crash left half-applied (:func:`shoppulse.lake.commit.recover`);
3. reads, from the newest commit record, the next offset of every partition and ``assign``s the
   consumer there (consumer-group offsets are never used to resume);
4. consumes up to the high watermarks seen at the start, within a time and message budget, while a
   worker thread decodes and validates each chunk in bulk and stages its Parquet files;
5. commits all staged files with the new offsets in one commit record (the commit point), applies it;
6. with time left, compacts a partition that has accumulated small files.

A crash anywhere before the commit point leaves the lake as it was (the same offsets are read
again); a crash after it is completed by the next call's recovery. So every offset lands exactly once.
"""

from __future__ import annotations

import datetime as dt
import logging
import operator
import os
import threading
import time
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Message, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec
from tenacity import Retrying, retry_if_exception, stop_after_delay, wait_exponential

from shoppulse.gc_pause import paused_cyclic_gc
from shoppulse.lake import commit as log
from shoppulse.lake.compaction import compact_one
from shoppulse.lake.decode import DecodedBatch, MessageBatch, decode
from shoppulse.lake.layout import LakeTable
from shoppulse.settings import Settings

logger = logging.getLogger(__name__)

CONSUME_BATCH = 10_000


@dataclass(frozen=True)
class DrainConfig:
    """Where to read, where to write, and how much one call may do."""

    bootstrap_servers: str
    topic: str
    lake_dir: Path
    max_seconds: float = 3.0
    max_messages: int = 2_000_000
    chunk_messages: int = 20_000
    decode_workers: int = 3  # three keep both cores busy (two left ~15% idle in the glue between Polars calls)
    max_event_bytes: int = 65_536
    lateness_horizon_ms: int = 72 * 3_600_000
    compaction_min_files: int = 10
    compaction_max_rows: int = 500_000  # merges stream: RSS does not grow with it, time does (~1 s)
    vacuum_grace_seconds: float = 600.0
    request_timeout_seconds: float = 10.0

    @staticmethod
    def from_settings(settings: Settings, **overrides: object) -> DrainConfig:
        values: dict[str, object] = {
            "bootstrap_servers": settings.bootstrap_servers,
            "topic": settings.events_topic,
            "lake_dir": settings.lake_dir,
            "max_event_bytes": settings.max_event_bytes,
            "lateness_horizon_ms": int(settings.lateness_horizon_hours * 3_600_000),
        }
        values.update(overrides)
        return DrainConfig(**values)  # type: ignore[arg-type]


@dataclass
class DrainResult:
    """What one call did. `status`: drained (committed), idle (nothing new) or busy (lake locked)."""

    status: str
    seq: int = 0
    messages: int = 0
    events: int = 0
    late: int = 0
    quarantined: int = 0
    quarantined_by_code: dict[str, int] = field(default_factory=dict)
    changed: dict[str, list[str]] = field(default_factory=dict)
    ranges: dict[int, tuple[int, int]] = field(default_factory=dict)
    next_offsets: dict[int, int] = field(default_factory=dict)
    high_watermarks: dict[int, int] = field(default_factory=dict)
    compacted: list[str] = field(default_factory=list)
    written_bytes: int = 0
    """Bytes of the data files this call's commit added (compaction not included)."""
    commit_seconds: float = 0.0
    """Wall time of the commit point and applying it."""
    seconds: float = 0.0

    @property
    def lag(self) -> int:
        """Messages in the topic not yet in the lake (as of the high watermarks read by this call)."""
        return sum(max(hw - self.next_offsets.get(p, 0), 0) for p, hw in self.high_watermarks.items())


@dataclass(frozen=True)
class ChunkCounts:
    """What a decoded chunk contributed (its rows are already staged as Parquet)."""

    events: int
    late: int
    quarantined_by_code: dict[str, int]

    @staticmethod
    def of(decoded: DecodedBatch) -> ChunkCounts:
        codes = dict(decoded.quarantine.group_by("reason_code").len().iter_rows()) if decoded.quarantine.height else {}
        return ChunkCounts(decoded.events.height, decoded.late.height, codes)


CONSUMER_CONFIG: dict[str, object] = {
    "group.id": "shoppulse-lake-drain",  # informational only: offsets live in the lake
    "enable.auto.commit": False,
    "enable.auto.offset.store": False,
    "enable.partition.eof": False,
    "auto.offset.reset": "earliest",
    # A bounded prefetch (RSS does not grow with the backlog). librdkafka pauses a partition's
    # fetching for `fetch.queue.backoff.ms` (default 1 s) whenever this queue is full: with the
    # default, a backlog reads at a fraction of the broker's speed (bare consume measured 2-4x slower).
    "queued.max.messages.kbytes": 16_384,
    "fetch.queue.backoff.ms": 5,
    "fetch.max.bytes": 8_388_608,
    "max.partition.fetch.bytes": 2_097_152,
    "fetch.wait.max.ms": 100,
    "client.id": "shoppulse-drain",
}
"""librdkafka settings of the drain's consumer (the ingest benchmark's bare loop uses the same)."""


class _ConsumerCache:
    """One long-lived consumer per (cluster, topic) in this process, so prefetched data survives ticks."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._consumers: dict[tuple[str, str], Consumer] = {}
        self._admins: dict[str, AdminClient] = {}

    def admin(self, bootstrap_servers: str) -> AdminClient:
        with self._lock:
            if bootstrap_servers not in self._admins:
                self._admins[bootstrap_servers] = AdminClient({"bootstrap.servers": bootstrap_servers})
            return self._admins[bootstrap_servers]

    def discard_admin(self, bootstrap_servers: str) -> None:
        """Forget a client whose cached metadata went stale (e.g. fenced leader epoch after a restart)."""
        with self._lock:
            self._admins.pop(bootstrap_servers, None)

    def get(self, bootstrap_servers: str, topic: str) -> Consumer:
        key = (bootstrap_servers, topic)
        with self._lock:
            consumer = self._consumers.get(key)
            if consumer is None:
                consumer = Consumer({"bootstrap.servers": bootstrap_servers, **CONSUMER_CONFIG})
                self._consumers[key] = consumer
            return consumer

    def discard(self, bootstrap_servers: str, topic: str) -> None:
        with self._lock:
            consumer = self._consumers.pop((bootstrap_servers, topic), None)
        if consumer is not None:
            consumer.close()


CONSUMERS = _ConsumerCache()


def _position(consumer: Consumer, topic: str, partitions: Iterable[int], start: dict[int, int]) -> None:
    """Point the consumer at `start` (next offset per partition), keeping prefetched data when it already is."""
    wanted = {p: start.get(p, OFFSET_BEGINNING) for p in partitions}
    try:
        current = {tp.partition: tp.offset for tp in consumer.position([TopicPartition(topic, p) for p in wanted])}
    except KafkaException:
        current = {}
    assigned = {tp.partition for tp in consumer.assignment() if tp.topic == topic}
    if assigned == set(wanted) and all(current.get(p) == o and o >= 0 for p, o in wanted.items()):
        return
    consumer.assign([TopicPartition(topic, p, o) for p, o in wanted.items()])


def _is_retriable(exc: BaseException) -> bool:
    if isinstance(exc, KafkaException) and exc.args and isinstance(exc.args[0], KafkaError):
        return exc.args[0].retriable() or exc.args[0].code() in RETRIABLE_CODES
    return False


RETRIABLE_CODES = {KafkaError.FENCED_LEADER_EPOCH, KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE}


def _high_watermarks(bootstrap_servers: str, topic: str, partitions: Iterable[int], timeout: float) -> dict[int, int]:
    """Latest offset of every partition, in one ListOffsets request (retried while the cluster settles)."""
    for attempt in Retrying(
        retry=retry_if_exception(_is_retriable),
        stop=stop_after_delay(timeout),
        wait=wait_exponential(multiplier=0.05, max=1.0),
        before_sleep=lambda _: CONSUMERS.discard_admin(bootstrap_servers),
        reraise=True,
    ):
        with attempt:
            futures = CONSUMERS.admin(bootstrap_servers).list_offsets(
                {TopicPartition(topic, p): OffsetSpec.latest() for p in partitions}, request_timeout=timeout
            )
            return {tp.partition: future.result(timeout=timeout).offset for tp, future in futures.items()}
    raise AssertionError("unreachable")


_PARTITION = Message.partition
_OFFSET = Message.offset
_TIMESTAMP = Message.timestamp
_TIMESTAMP_MS = operator.itemgetter(1)
_KEY = Message.key
_VALUE = Message.value
_ERROR = Message.error


class _Chunk:
    """Messages accumulated for one decode job."""

    def __init__(self, topic: str) -> None:
        self.batch = MessageBatch(topic, [], [], [], [], [])

    def extend(self, messages: list[Message]) -> tuple[list[int], list[int]]:
        """Append messages (C-level `map` over the accessors: no Python frame per message)."""
        b = self.batch
        partitions = list(map(_PARTITION, messages))
        offsets = list(map(_OFFSET, messages))
        b.partitions.extend(partitions)
        b.offsets.extend(offsets)
        b.timestamps_ms.extend(map(_TIMESTAMP_MS, map(_TIMESTAMP, messages)))
        b.keys.extend(map(_KEY, messages))
        b.values.extend(map(_VALUE, messages))
        return partitions, offsets


def _write_parquet(frame: pl.DataFrame, stage: log.Stage, table: LakeTable, date: dt.date, name: str) -> log.FileRef:
    path = stage.path_for(table, date, name)
    with open(path, "wb") as handle:
        frame.write_parquet(handle, compression="zstd", compression_level=1, statistics=True)  # compaction recompresses
        handle.flush()
        os.fsync(handle.fileno())
    ref = log.FileRef(table, date, name, rows=frame.height, size=path.stat().st_size)
    stage.add(ref)
    return ref


def _stage_decoded(decoded: DecodedBatch, stage: log.Stage, chunk_no: int) -> None:
    """Write a decoded chunk's rows as Parquet files, one per (table, partition date)."""
    name = f"{stage.seq:012d}-{chunk_no:04d}.parquet"
    for table, frame, key in (
        (LakeTable.EVENTS, decoded.events, "event_date"),
        (LakeTable.LATE, decoded.late, "kafka_ts"),
        (LakeTable.QUARANTINE, decoded.quarantine, "received_date"),
    ):
        if frame.is_empty():
            continue
        day = pl.col(key).dt.date() if key == "kafka_ts" else pl.col(key)
        for (date,), part in frame.with_columns(_day=day).partition_by("_day", as_dict=True).items():
            _write_parquet(part.drop("_day"), stage, table, date, name)


def drain(config: DrainConfig) -> DrainResult:
    """Move what is new in the topic into the lake (see module doc). Safe to call concurrently."""
    began = time.monotonic()
    lake = Path(config.lake_dir)
    try:
        with log.lake_lock(lake):
            result = _drain_locked(config, lake, began)
    except log.LakeBusyError:
        return DrainResult(status="busy", seconds=time.monotonic() - began)
    result.seconds = time.monotonic() - began
    return result


def _drain_locked(config: DrainConfig, lake: Path, began: float) -> DrainResult:
    latest = log.recover(lake)
    start = log.committed_offsets(lake, config.topic)
    consumer = CONSUMERS.get(config.bootstrap_servers, config.topic)
    try:
        admin = CONSUMERS.admin(config.bootstrap_servers)
        metadata = admin.list_topics(config.topic, timeout=config.request_timeout_seconds).topics[config.topic]
        if metadata.error is not None:
            raise KafkaException(metadata.error)
        partitions = sorted(metadata.partitions)
        _position(consumer, config.topic, partitions, start)
        targets = _high_watermarks(config.bootstrap_servers, config.topic, partitions, config.request_timeout_seconds)
    except (KafkaException, TimeoutError):
        CONSUMERS.discard(config.bootstrap_servers, config.topic)
        CONSUMERS.discard_admin(config.bootstrap_servers)
        raise
    next_offsets = {p: start.get(p, 0) for p in partitions}
    # A partition whose data was deleted by retention starts at its low watermark.
    pending = {p for p in partitions if targets[p] > next_offsets[p]}
    result = DrainResult(status="idle", seq=latest, high_watermarks=targets, next_offsets=dict(next_offsets))
    if pending:
        with paused_cyclic_gc():  # one GC-tracked Message per record: see shoppulse/gc_pause.py
            _consume_and_commit(config, lake, consumer, latest + 1, pending, targets, start, began, result)
    if time.monotonic() - began < config.max_seconds:
        candidates = [(LakeTable(t), dt.date.fromisoformat(d)) for t, days in result.changed.items() for d in days]
        result.compacted = compact_one(
            lake, config.compaction_min_files, config.compaction_max_rows, config.vacuum_grace_seconds, candidates
        )
    if result.seq % 1000 == 0 and result.seq:
        log.prune_log(lake)
    return result


def _consume_and_commit(
    config: DrainConfig,
    lake: Path,
    consumer: Consumer,
    seq: int,
    pending: set[int],
    targets: dict[int, int],
    start: dict[int, int],
    began: float,
    result: DrainResult,
) -> None:
    stage = log.Stage(lake, seq)
    first: dict[int, int] = {}
    last: dict[int, int] = {}
    counts = {"messages": 0, "events": 0, "late": 0, "quarantined": 0}
    by_code: dict[str, int] = {}
    jobs: list[Future[ChunkCounts]] = []

    def decode_and_stage(chunk: MessageBatch, chunk_no: int) -> ChunkCounts:
        decoded = decode(chunk, config.max_event_bytes, config.lateness_horizon_ms)
        _stage_decoded(decoded, stage, chunk_no)
        return ChunkCounts.of(decoded)  # the frames are on disk now: keep only their counts

    deadline = began + config.max_seconds
    with ThreadPoolExecutor(max_workers=config.decode_workers, thread_name_prefix="drain-decode") as pool:
        chunk = _Chunk(config.topic)
        try:
            while pending and time.monotonic() < deadline and counts["messages"] < config.max_messages:
                messages = consumer.consume(num_messages=CONSUME_BATCH, timeout=0.1)
                if not messages:
                    continue
                if any(map(_ERROR, messages)):
                    messages = _drop_errors(messages)
                partitions, offsets = chunk.extend(messages)
                counts["messages"] += len(messages)
                for p, o in dict(zip(reversed(partitions), reversed(offsets), strict=True)).items():
                    first.setdefault(p, o)
                last.update(zip(partitions, offsets, strict=True))
                pending -= {p for p in pending if p in last and last[p] + 1 >= targets[p]}
                if len(chunk.batch) >= config.chunk_messages:
                    # Bound memory: at most `decode_workers` chunks decoding while the next accumulates.
                    in_flight = [job for job in jobs if not job.done()]
                    if len(in_flight) >= config.decode_workers:
                        in_flight[0].result()
                    jobs.append(pool.submit(decode_and_stage, chunk.batch, len(jobs)))
                    chunk = _Chunk(config.topic)
            if len(chunk.batch):
                jobs.append(pool.submit(decode_and_stage, chunk.batch, len(jobs)))
            decoded_chunks = [job.result() for job in jobs]
        except BaseException:
            stage.discard()
            # What the consumer fetched past the lake's offsets must be read again next time.
            CONSUMERS.discard(config.bootstrap_servers, config.topic)
            raise
    if not counts["messages"]:
        stage.discard()
        return
    for chunk_counts in decoded_chunks:
        counts["events"] += chunk_counts.events
        counts["late"] += chunk_counts.late
        counts["quarantined"] += sum(chunk_counts.quarantined_by_code.values())
        for code, n in chunk_counts.quarantined_by_code.items():
            by_code[code] = by_code.get(code, 0) + n
    offsets = {str(p): o for p, o in start.items()}
    offsets.update({str(p): o + 1 for p, o in last.items()})
    record = log.CommitRecord(
        seq=seq,
        kind="append",
        offsets={config.topic: offsets},
        ranges={config.topic: {str(p): [first[p], last[p]] for p in sorted(last)}},
        counts={**counts, **{f"quarantined.{code}": n for code, n in by_code.items()}},
    )
    committing = time.monotonic()
    log.commit(lake, stage, record)
    result.commit_seconds = time.monotonic() - committing
    result.written_bytes = sum(ref.size for ref in stage.files)
    result.status = "drained"
    result.seq = seq
    result.messages = counts["messages"]
    result.events = counts["events"]
    result.late = counts["late"]
    result.quarantined = counts["quarantined"]
    result.quarantined_by_code = by_code
    result.ranges = {p: tuple(r) for p, r in ((int(p), r) for p, r in record.ranges[config.topic].items())}
    result.next_offsets.update({int(p): o for p, o in offsets.items()})
    changed: dict[str, set[str]] = {}
    for ref in stage.files:
        changed.setdefault(ref.table.value, set()).add(ref.date.isoformat())
    result.changed = {table: sorted(days) for table, days in changed.items()}


def _drop_errors(messages: list) -> list:  # type: ignore[type-arg]
    """Keep data messages; raise on errors that mean the read cannot be trusted."""
    kept = []
    for m in messages:
        err = m.error()
        if err is None:
            kept.append(m)
        elif err.code() == KafkaError._PARTITION_EOF:
            continue
        elif err.fatal() or not err.retriable():
            raise KafkaException(err)
        else:
            logger.warning("transient consumer error (will retry): %s", err)
    return kept
