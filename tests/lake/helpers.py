"""Producing to the real broker and auditing a lake against the topic."""

from __future__ import annotations

from collections import Counter

import polars as pl
from confluent_kafka import Consumer, Producer, TopicPartition

from shoppulse.lake import committed_offsets
from shoppulse.lake.layout import LakeTable, partition_dates, read_partition
from shoppulse.lake.table import LakeRef, commit_info, commits_between, table_version
from shoppulse.rollups.source import scan_partition


def produce(bootstrap: str, topic: str, messages: list[tuple[bytes | None, bytes | None]]) -> int:
    """Produce (key, value) pairs idempotently; returns how many the broker acknowledged."""
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 20,
            "compression.type": "lz4",
            "queue.buffering.max.messages": 1_000_000,
        }
    )
    acked = []

    def on_delivery(err: object, msg: object) -> None:
        if err is None:
            acked.append(1)

    for key, value in messages:
        while True:
            try:
                producer.produce(topic, value, key, on_delivery=on_delivery)
                break
            except BufferError:
                producer.poll(0.05)
    assert producer.flush(60) == 0
    return len(acked)


def produce_to_partition(
    bootstrap: str, topic: str, partition: int, messages: list[tuple[bytes | None, bytes | None]]
) -> None:
    """Produce (key, value) pairs into one partition."""
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all"})
    for key, value in messages:
        producer.produce(topic, value, key, partition=partition)
    assert producer.flush(60) == 0


def high_watermarks(bootstrap: str, topic: str, partitions: int) -> dict[int, int]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "audit"})
    try:
        return {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in range(partitions)}
    finally:
        consumer.close()


def landed_offsets(lake: LakeRef) -> Counter[tuple[int, int]]:
    """(kafka partition, offset) of every row in the lake's three kinds of record, with multiplicity."""
    seen: Counter[tuple[int, int]] = Counter()
    for table in LakeTable:
        for day in partition_dates(lake, table):
            snap = read_partition(lake, table, day)
            if snap.files:
                frame = scan_partition(snap, {"kafka_partition": pl.Int32(), "kafka_offset": pl.Int64()}).collect()
                seen.update(zip(frame["kafka_partition"].to_list(), frame["kafka_offset"].to_list(), strict=True))
    return seen


def assert_exactly_once(lake: LakeRef, topic: str, hw: dict[int, int]) -> None:
    """Every offset below the high watermark is in the lake once, and the commit ranges tile the topic."""
    seen = landed_offsets(lake)
    duplicates = {k: n for k, n in seen.items() if n > 1}
    assert not duplicates, f"{len(duplicates)} offsets landed twice, e.g. {list(duplicates)[:5]}"
    expected = {(p, o) for p, end in hw.items() for o in range(end)}
    missing = expected - set(seen)
    assert not missing, f"{len(missing)} offsets missing, e.g. {sorted(missing)[:5]}"
    assert set(seen) == expected
    committed = committed_offsets(lake, topic)
    assert {p: committed[p] for p in committed} == {p: hw[p] for p in committed}
    assert {p for p, end in hw.items() if end > 0} <= set(committed)
    # The append commits' ranges are contiguous per partition: no gap, no overlap.
    next_expected: dict[int, int] = {}
    for _, actions in commits_between(lake, 0, table_version(lake)):
        info = commit_info(actions).get("shoppulse", {})
        if info.get("topic") != topic:
            continue
        for part, (first, last) in info.get("ranges", {}).items():
            p = int(part)
            assert first == next_expected.get(p, 0), f"partition {p}: range starts at {first}"
            next_expected[p] = last + 1
    assert next_expected == {p: end for p, end in hw.items() if end > 0}
