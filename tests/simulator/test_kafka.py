"""Into the real broker: exact counts back, keys ordered within partitions, Kafka timestamps, clean stop."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

from confluent_kafka import Consumer, KafkaException, TopicPartition

from shoppulse.settings import Settings
from simulator.faults import FaultConfig
from simulator.producer import KafkaSink
from simulator.run import Runner, history_plan
from simulator.stream import Stream
from tests.simulator.conftest import ALL_FAULTS, END_MS, HORIZON_MS, MAX_EVENT_BYTES, simulate
from tests.simulator.oracle import recompute

PARTITIONS = 4
FAULT_FLAGS = [
    "--duplicate-rate=0.02",
    "--out-of-order-rate=0.03",
    "--late-rate=0.02",
    "--late-delay=3h",
    "--late-beyond-share=0.3",
    "--lateness-horizon-hours=72",
    "--malformed-rate=0.01",
    "--v2-rate=0.05",
    "--max-event-bytes=65536",
]


def high_watermarks(settings: Settings, topic: str) -> int:
    """Messages in `topic` (retrying while a new topic's partition leaders are still being elected)."""
    consumer = Consumer({"bootstrap.servers": settings.bootstrap_servers, "group.id": "sim-watermarks"})
    deadline = time.monotonic() + 30
    try:
        while True:
            try:
                return sum(
                    consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in range(PARTITIONS)
                )
            except KafkaException:  # e.g. NOT_LEADER_FOR_PARTITION (not flagged retriable) on a fresh topic
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
    finally:
        consumer.close()


def read_all(settings: Settings, topic: str, expected: int) -> list[tuple[int, int, bytes, bytes, int]]:
    """Every message of `topic` as (partition, offset, key, value, CreateTime timestamp)."""
    consumer = Consumer(
        {
            "bootstrap.servers": settings.bootstrap_servers,
            "group.id": "sim-readback",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",  # never skip to the end should an offset be refused
        }
    )
    consumer.assign([TopicPartition(topic, p, 0) for p in range(PARTITIONS)])
    out = []
    deadline = time.monotonic() + 120
    try:
        while len(out) < expected and time.monotonic() < deadline:
            for msg in consumer.consume(5_000, timeout=1.0):
                assert msg.error() is None, msg.error()
                timestamp_type, timestamp = msg.timestamp()
                assert timestamp_type == 1  # CreateTime: the simulator's own stamp
                out.append((msg.partition(), msg.offset(), msg.key(), msg.value(), timestamp))
    finally:
        consumer.close()
    return out


def run_cli(*args: str, timeout: float = 180) -> dict:
    proc = subprocess.run(
        [sys.executable, "-m", "simulator", *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_burst_into_kafka_reads_back_exactly_with_ground_truth(
    kafka_topic: Callable[..., str], settings: Settings, tmp_path: Path
) -> None:
    topic = kafka_topic("sim-burst", partitions=PARTITIONS)
    truth_path = tmp_path / "truth.json"
    summary = run_cli(
        "burst", "--events=10000", "--days=1", "--end=2026-01-15T00:00:00", "--seed=5", f"--topic={topic}",
        f"--bootstrap-servers={settings.bootstrap_servers}", f"--ground-truth={truth_path}", "--no-progress",
        *FAULT_FLAGS,
    )  # fmt: skip
    assert summary["ok"] and summary["events"] == 10_000
    assert summary["delivery"]["delivered"] == summary["messages"]

    messages = read_all(settings, topic, summary["messages"])
    assert len(messages) == summary["messages"] == high_watermarks(settings, topic)

    # Exactly the bytes an in-memory run with the same seed and window produces, each key in one
    # partition and in send order there.
    expected = simulate(ALL_FAULTS, seed=5, days=1, burst_events=10_000, end_ms=END_MS)
    sent_by_key: dict[bytes, list[tuple[bytes, int]]] = defaultdict(list)
    for value, key, ts in expected.messages:
        sent_by_key[key].append((value, ts))
    got_by_key: dict[bytes, list[tuple[bytes, int]]] = defaultdict(list)
    partitions_of_key: dict[bytes, set[int]] = defaultdict(set)
    for partition, _, key, value, ts in sorted(messages, key=lambda m: (m[0], m[1])):
        got_by_key[key].append((value, ts))
        partitions_of_key[key].add(partition)
    assert got_by_key == sent_by_key
    assert all(len(p) == 1 for p in partitions_of_key.values())

    # The ground truth file equals a recomputation from what came back out of Kafka.
    truth = json.loads(truth_path.read_text())
    in_offset_order = sorted(messages, key=lambda m: (m[0], m[1]))
    oracle = recompute([(value, ts) for _, _, _, value, ts in in_offset_order], HORIZON_MS, MAX_EVENT_BYTES)
    assert truth["days"] == oracle["days"]
    assert truth["malformed_by_received_day"] == oracle["malformed_by_received_day"]
    assert truth["late_beyond_horizon_by_received_day"] == oracle["late_beyond_horizon_by_received_day"]
    assert truth["totals"]["messages"] == len(messages)


def test_history_lands_with_kafka_timestamp_equal_to_event_time(
    kafka_topic: Callable[..., str], settings: Settings
) -> None:
    topic = kafka_topic("sim-history", partitions=PARTITIONS)
    plan = history_plan(2, END_MS, days=2, events_per_day=3_000, products=5_000)
    sink = KafkaSink(settings.bootstrap_servers, topic)
    result = Runner(Stream(plan, FaultConfig()), sink, "history", topic, progress=False).run_until(END_MS)
    assert result.ok and result.delivery.delivered == result.messages > 4_000
    messages = read_all(settings, topic, result.messages)
    assert len(messages) == result.messages
    days = set()
    for _, _, _, value, ts in messages:
        event_ts = json.loads(value)["event_ts"]
        assert ts == event_ts
        days.add(event_ts // 86_400_000)
    assert len(days) >= 2 and max(days) < END_MS // 86_400_000


def test_live_runs_until_sigterm_then_flushes_and_exits_0(kafka_topic: Callable[..., str], settings: Settings) -> None:
    topic = kafka_topic("sim-live", partitions=PARTITIONS)
    started_ms = time.time_ns() // 1_000_000
    proc = subprocess.Popen(
        [sys.executable, "-m", "simulator", "live", "--rate=200", "--seed=3", f"--topic={topic}", "--no-progress",
         f"--bootstrap-servers={settings.bootstrap_servers}"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ},
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 90
        while high_watermarks(settings, topic) < 100:
            assert proc.poll() is None, proc.communicate()[1][-2000:]
            assert time.monotonic() < deadline, "live mode sent nothing"
            time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, stderr[-2000:]
    summary = json.loads(stdout.strip().splitlines()[-1])
    assert summary["stopped"] and summary["ok"]
    assert summary["messages"] == high_watermarks(settings, topic)  # everything handed over was delivered
    stopped_ms = time.time_ns() // 1_000_000
    for _, _, _, value, ts in read_all(settings, topic, summary["messages"]):
        event_ts = json.loads(value)["event_ts"]
        assert event_ts == ts  # no faults: stamped when sent
        assert started_ms - 60_000 <= ts <= stopped_ms


def test_a_full_local_queue_neither_loses_nor_repeats_messages(
    kafka_topic: Callable[..., str], settings: Settings
) -> None:
    topic = kafka_topic("sim-queue-full", partitions=PARTITIONS)
    n = 30_000
    values = [f"value-{i}" for i in range(n)]
    keys = [f"key-{i % 11}" for i in range(n)]
    timestamps = [END_MS + i for i in range(n)]
    # A 300-message local queue: produce() raises BufferError over and over; the sink must resume exactly.
    sink = KafkaSink(settings.bootstrap_servers, topic, extra_config={"queue.buffering.max.messages": 300})
    assert sink.send(values, keys, timestamps) == n
    assert sink.flush(60) == 0
    assert sink.stats().delivered == n and sink.stats().failed == 0
    got: dict[bytes, list[tuple[bytes, int]]] = defaultdict(list)
    for _, _, key, value, ts in sorted(read_all(settings, topic, n), key=lambda m: (m[0], m[1])):
        got[key].append((value, ts))
    sent: dict[bytes, list[tuple[bytes, int]]] = defaultdict(list)
    for value, key, ts in zip(values, keys, timestamps, strict=True):
        sent[key.encode()].append((value.encode(), ts))
    assert got == sent
