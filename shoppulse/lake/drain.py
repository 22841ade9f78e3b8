"""Drain the events topic into the lake: bounded in time and size, effectively once.

One call of :func:`drain` (for one shard: a fixed subset of the topic's partitions, or all of them):

1. takes a host-local lock for (lake, topic, shard): an overlapping call on this host returns ``busy``;
2. opens the lake's Delta table and reads, from its app transactions, the next offset of every
   partition of the shard, and ``assign``s the consumer there (consumer-group offsets are never used);
3. consumes up to the high watermarks seen at the start, within a time and message budget, while a
   worker thread decodes and validates each chunk in bulk and writes its Parquet files (invisible);
4. commits all those files with the new offsets (one app transaction per partition) in ONE Delta
   commit against the snapshot of step 2: if any other writer committed offsets of these partitions
   since (a zombie, an overlapping tick on another host), delta-rs refuses it (status ``refused``);
5. with time left, compacts (optimizes) a partition that has accumulated small files.

A crash anywhere before the commit leaves the table as it was (the same offsets are read again, the
orphan files are never referenced). So every offset lands exactly once, whatever runs concurrently.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import hashlib
import logging
import operator
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Message, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec
from deltalake import DeltaTable
from deltalake.transaction import AddAction
from tenacity import Retrying, retry_if_exception, stop_after_delay, wait_exponential

from shoppulse.gc_pause import paused_cyclic_gc
from shoppulse.lake.compaction import MAX_REWRITE_BYTES, compact_one, vacuum
from shoppulse.lake.decode import DecodedBatch, MessageBatch, decode
from shoppulse.lake.layout import LakeTable
from shoppulse.lake.legacy import import_legacy, legacy_lake
from shoppulse.lake.table import VACUUM_RETENTION_HOURS, LakeRef, lake_uri, offsets_in, open_table
from shoppulse.lake.writer import StaleOffsetsError, commit_files, remove_uncommitted, write_file
from shoppulse.settings import Settings

logger = logging.getLogger(__name__)

CONSUME_BATCH = 10_000


@dataclass(frozen=True)
class DrainConfig:
    """Where to read, where to write, and how much one call may do."""

    bootstrap_servers: str
    topic: str
    lake_dir: LakeRef
    """The lake: a local directory or an s3:// URI (see shoppulse.lake.table)."""
    max_seconds: float = 3.0
    max_messages: int = 2_000_000
    chunk_messages: int = 20_000
    decode_workers: int = 3  # three keep both cores busy (two left ~15% idle in the glue between Polars calls)
    max_event_bytes: int = 65_536
    lateness_horizon_ms: int = 72 * 3_600_000
    compaction_min_files: int = 10
    compaction_target_bytes: int = 32 * 1024 * 1024  # optimize streams one bin at a time: RSS stays flat
    compaction_max_bytes: int = MAX_REWRITE_BYTES  # a tick's compaction rewrites at most this: ~1 s
    vacuum_every_versions: int = 500
    vacuum_retention_hours: int = VACUUM_RETENTION_HOURS
    partitions: tuple[int, ...] | None = None
    """Only these Kafka partitions (None: all of the topic's, or those of `shard`)."""
    shard: tuple[int, int] | None = None
    """(index, count): drain the partitions p with p % count == index (see `shard_partitions`)."""

    @property
    def shard_label(self) -> str:
        """Names this drain's commits in the log (sensors report only their own shard's commits)."""
        if self.shard is not None:
            return f"{self.shard[0]}/{self.shard[1]}"
        if self.partitions is not None:
            return ",".join(map(str, self.partitions))
        return ""

    @property
    def compacts(self) -> bool:
        """Whether this drain runs optimize and vacuum: the unsharded drain, or shard 0 of a sharded set.

        delta-rs 1.6 does not refuse the second of two optimize commits that removed the same files from
        one snapshot: both land and the partition's rows count twice. So exactly one writer per table
        compacts (the shard lock keeps a shard's ticks on one host from overlapping); the other shards,
        and drains of explicit partition lists, only append.
        """
        return (self.shard is None and self.partitions is None) or (self.shard is not None and self.shard[0] == 0)

    @property
    def shard_key(self) -> tuple[int, ...] | None:
        if self.shard is not None:
            return (-1, *self.shard)
        return self.partitions

    request_timeout_seconds: float = 10.0

    @staticmethod
    def from_settings(settings: Settings, **overrides: object) -> DrainConfig:
        values: dict[str, object] = {
            "bootstrap_servers": settings.bootstrap_servers,
            "topic": settings.events_topic,
            "lake_dir": settings.lake_location,
            "max_event_bytes": settings.max_event_bytes,
            "lateness_horizon_ms": int(settings.lateness_horizon_hours * 3_600_000),
        }
        values.update(overrides)
        return DrainConfig(**values)  # type: ignore[arg-type]


@dataclass
class DrainResult:
    """What one call did. `status`: drained (committed), idle (nothing new), busy (an overlapping call
    on this host holds the shard) or refused (another writer committed these partitions' offsets first:
    nothing landed). `seq` is the Delta table version after the call's commit (or as read, if none)."""

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
        self._consumers: dict[tuple[str, str, tuple[int, ...] | None], Consumer] = {}
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

    def get(self, bootstrap_servers: str, topic: str, shard: tuple[int, ...] | None = None) -> Consumer:
        """The consumer of one shard (its own: shards drained in one process must not reassign each other's)."""
        key = (bootstrap_servers, topic, shard)
        with self._lock:
            consumer = self._consumers.get(key)
            if consumer is None:
                consumer = Consumer({"bootstrap.servers": bootstrap_servers, **CONSUMER_CONFIG})
                self._consumers[key] = consumer
            return consumer

    def discard_topic(self, bootstrap_servers: str, topic: str) -> None:
        """Close the consumers of every shard of `topic` (e.g. the topic is being deleted)."""
        with self._lock:
            keys = [key for key in self._consumers if key[:2] == (bootstrap_servers, topic)]
            consumers = [self._consumers.pop(key) for key in keys]
        for consumer in consumers:
            consumer.close()

    def discard(self, bootstrap_servers: str, topic: str, shard: tuple[int, ...] | None = None) -> None:
        with self._lock:
            consumer = self._consumers.pop((bootstrap_servers, topic, shard), None)
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


def _stage_decoded(decoded: DecodedBatch, lake: LakeRef) -> list[AddAction]:
    """Write a decoded chunk's rows as Parquet files, one per (kind, partition date); not yet committed."""
    adds = []
    for table, frame, key in (
        (LakeTable.EVENTS, decoded.events, "event_date"),
        (LakeTable.LATE, decoded.late, "kafka_ts"),
        (LakeTable.QUARANTINE, decoded.quarantine, "received_date"),
    ):
        if frame.is_empty():
            continue
        day = pl.col(key).dt.date() if key == "kafka_ts" else pl.col(key)
        for (date,), part in frame.with_columns(_day=day).partition_by("_day", as_dict=True).items():
            adds.append(write_file(lake, table, date, part.drop("_day")))  # compaction recompresses
    return adds


_LOCK_DIR = Path(tempfile.gettempdir()) / "shoppulse-drain-locks"


@contextmanager
def _shard_lock(config: DrainConfig) -> Iterator[bool]:
    """Host-local, non-blocking lock of (lake, topic, shard); yields False when another call holds it.

    Only saves an overlapping call on this host the wasted work: correctness across hosts comes from
    the commit (offsets are checked against the log there).
    """
    _LOCK_DIR.mkdir(parents=True, exist_ok=True)
    key = f"{lake_uri(config.lake_dir)}|{config.topic}|{config.shard_key}"
    path = _LOCK_DIR / f"{hashlib.sha256(key.encode()).hexdigest()[:32]}.lock"
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True


def drain(config: DrainConfig) -> DrainResult:
    """Move what is new in the shard's partitions into the lake (see module doc). Safe to call
    concurrently, from any number of processes and hosts."""
    began = time.monotonic()
    with _shard_lock(config) as acquired:
        if not acquired:
            return DrainResult(status="busy", seconds=time.monotonic() - began)
        try:
            result = drain_unlocked(config, began)
        except StaleOffsetsError as exc:
            logger.warning("drain refused: %s", exc)
            result = DrainResult(status="refused")
    result.seconds = time.monotonic() - began
    return result


def shard_partitions(partitions: Iterable[int], shard: int, shards: int) -> tuple[int, ...]:
    """The fixed subset of `partitions` shard `shard` (0-based) of `shards` owns: p % shards == shard."""
    if not 0 <= shard < shards:
        raise ValueError(f"shard {shard} is not in 0..{shards - 1}")
    return tuple(p for p in sorted(partitions) if p % shards == shard)


def drain_unlocked(config: DrainConfig, began: float | None = None) -> DrainResult:
    """One drain without the host-local lock (raises StaleOffsetsError when the commit is refused)."""
    began = time.monotonic() if began is None else began
    lake = config.lake_dir
    if legacy_lake(lake):
        import_legacy(lake)  # once: a lake of the old commit log becomes the table's first data commit
    table = open_table(lake)
    consumer = CONSUMERS.get(config.bootstrap_servers, config.topic, config.shard_key)
    try:
        admin = CONSUMERS.admin(config.bootstrap_servers)
        metadata = admin.list_topics(config.topic, timeout=config.request_timeout_seconds).topics[config.topic]
        if metadata.error is not None:
            raise KafkaException(metadata.error)
        partitions = sorted(metadata.partitions)
        if config.partitions is not None:
            partitions = [p for p in partitions if p in set(config.partitions)]
        if config.shard is not None:
            partitions = list(shard_partitions(partitions, *config.shard))
        start = offsets_in(table, config.topic, partitions)
        _position(consumer, config.topic, partitions, start)
        targets = _high_watermarks(config.bootstrap_servers, config.topic, partitions, config.request_timeout_seconds)
    except (KafkaException, TimeoutError):
        CONSUMERS.discard(config.bootstrap_servers, config.topic, config.shard_key)
        CONSUMERS.discard_admin(config.bootstrap_servers)
        raise
    next_offsets = {p: start.get(p, 0) for p in partitions}
    # A partition whose data was deleted by retention starts at its low watermark.
    pending = {p for p in partitions if targets[p] > next_offsets[p]}
    result = DrainResult(status="idle", seq=table.version(), high_watermarks=targets, next_offsets=dict(next_offsets))
    if pending:
        with paused_cyclic_gc():  # one GC-tracked Message per record: see shoppulse/gc_pause.py
            _consume_and_commit(config, table, consumer, partitions, pending, targets, start, began, result)
    if result.status == "drained" and config.compacts and time.monotonic() - began < config.max_seconds:
        candidates = [(LakeTable(t), dt.date.fromisoformat(d)) for t, days in result.changed.items() for d in days]
        result.compacted = compact_one(
            lake,
            config.compaction_min_files,
            candidates,
            config.compaction_target_bytes,
            version=result.seq,
            max_bytes=config.compaction_max_bytes,
        )
    if result.status == "drained" and config.compacts and result.seq % config.vacuum_every_versions == 0:
        vacuum(lake, config.vacuum_retention_hours)
    return result


def _consume_and_commit(
    config: DrainConfig,
    table: DeltaTable,
    consumer: Consumer,
    partitions: list[int],
    pending: set[int],
    targets: dict[int, int],
    start: dict[int, int],
    began: float,
    result: DrainResult,
) -> None:
    lake = config.lake_dir
    first: dict[int, int] = {}
    last: dict[int, int] = {}
    counts = {"messages": 0, "events": 0, "late": 0, "quarantined": 0}
    by_code: dict[str, int] = {}
    jobs: list[Future[tuple[ChunkCounts, list[AddAction]]]] = []

    def decode_and_stage(chunk: MessageBatch) -> tuple[ChunkCounts, list[AddAction]]:
        decoded = decode(chunk, config.max_event_bytes, config.lateness_horizon_ms)
        adds = _stage_decoded(decoded, lake)
        return ChunkCounts.of(decoded), adds  # the frames are on storage now: keep only their counts

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
                partitions_of, offsets = chunk.extend(messages)
                counts["messages"] += len(messages)
                for p, o in dict(zip(reversed(partitions_of), reversed(offsets), strict=True)).items():
                    first.setdefault(p, o)
                last.update(zip(partitions_of, offsets, strict=True))
                pending -= {p for p in pending if p in last and last[p] + 1 >= targets[p]}
                if len(chunk.batch) >= config.chunk_messages:
                    # Bound memory: at most `decode_workers` chunks decoding while the next accumulates.
                    in_flight = [job for job in jobs if not job.done()]
                    if len(in_flight) >= config.decode_workers:
                        in_flight[0].result()
                    jobs.append(pool.submit(decode_and_stage, chunk.batch))
                    chunk = _Chunk(config.topic)
            if len(chunk.batch):
                jobs.append(pool.submit(decode_and_stage, chunk.batch))
            decoded_chunks = [job.result() for job in jobs]
        except BaseException:
            for job in jobs:
                if job.done() and job.exception() is None:
                    remove_uncommitted(lake, job.result()[1])
            # What the consumer fetched past the lake's offsets must be read again next time.
            CONSUMERS.discard(config.bootstrap_servers, config.topic, config.shard_key)
            raise
    if not counts["messages"]:
        return
    adds: list[AddAction] = []
    for chunk_counts, chunk_adds in decoded_chunks:
        adds.extend(chunk_adds)
        counts["events"] += chunk_counts.events
        counts["late"] += chunk_counts.late
        counts["quarantined"] += sum(chunk_counts.quarantined_by_code.values())
        for code, n in chunk_counts.quarantined_by_code.items():
            by_code[code] = by_code.get(code, 0) + n
    offsets = {p: start.get(p, 0) for p in partitions}
    offsets.update({p: o + 1 for p, o in last.items()})
    ranges = {str(p): [first[p], last[p]] for p in sorted(last)}
    committing = time.monotonic()
    try:
        version = commit_files(
            table,
            adds,
            offsets={(config.topic, p): o for p, o in offsets.items()},
            metadata={
                "kind": "append",
                "topic": config.topic,
                "shard": config.shard_label,
                "ranges": ranges,
                "counts": {**counts, **{f"quarantined.{code}": n for code, n in by_code.items()}},
            },
        )
    except StaleOffsetsError:
        remove_uncommitted(lake, adds)
        CONSUMERS.discard(config.bootstrap_servers, config.topic, config.shard_key)
        raise
    result.commit_seconds = time.monotonic() - committing
    result.written_bytes = sum(add.size for add in adds)
    result.status = "drained"
    result.seq = version
    result.messages = counts["messages"]
    result.events = counts["events"]
    result.late = counts["late"]
    result.quarantined = counts["quarantined"]
    result.quarantined_by_code = by_code
    result.ranges = {int(p): (r[0], r[1]) for p, r in ranges.items()}
    result.next_offsets.update(offsets)
    changed: dict[str, set[str]] = {}
    for add in adds:
        changed.setdefault(add.partition_values["record_kind"] or "", set()).add(
            add.partition_values["partition_date"] or ""
        )
    result.changed = {table_name: sorted(days) for table_name, days in changed.items()}


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
