"""The drain against the real broker: exactly once under crashes, overlaps and bad input."""

from __future__ import annotations

import gc
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time

import orjson
import polars as pl

from shoppulse.lake import committed_offsets, table_version
from shoppulse.lake.drain import DrainConfig, drain, shard_partitions
from shoppulse.lake.layout import LakeTable, partition_dates, read_partition
from shoppulse.lake.table import polars_storage_options
from tests.lake.factories import EVENT_TYPES, NOW_MS, event, valid
from tests.lake.helpers import assert_exactly_once, high_watermarks, landed_offsets, produce

HOUR_MS = 3_600_000


def drain_until_idle(config: DrainConfig, partitions: int, limit: int = 200) -> list:
    """Drain until the lake holds every offset below the topic's high watermarks and a drain finds nothing
    more (an idle drain alone is not enough: on a loaded machine the first poll can return nothing)."""
    target = high_watermarks(config.bootstrap_servers, config.topic, partitions)
    if config.shard is not None:  # a shard drains only its own partitions
        owned = shard_partitions(target, *config.shard)
        target = {p: end for p, end in target.items() if p in owned}
    results = []
    for _ in range(limit):
        result = drain(config)
        results.append(result)
        landed = committed_offsets(config.lake_dir, config.topic)
        if result.status == "idle" and all(landed.get(p, 0) >= end for p, end in target.items()):
            return results
    raise AssertionError("drain never caught up")


def test_drain_lands_valid_late_and_bad_messages_exactly_once(kafka_topic, settings, lake_uri) -> None:
    topic = kafka_topic("drain", partitions=3)
    rng = random.Random(3)
    now_ms = int(time.time() * 1000)
    good = [valid(event(rng.choice(EVENT_TYPES), ts_ms=now_ms - rng.randint(0, 60_000))) for _ in range(3000)]
    late_within = [valid(event("page_view", ts_ms=now_ms - 50 * HOUR_MS)) for _ in range(40)]
    beyond = [valid(event("page_view", ts_ms=now_ms - 100 * HOUR_MS)) for _ in range(25)]
    duplicate = good[:10]
    bad = [b'{"event_id": ', b"\xff", b"", orjson.dumps({**event("page_view"), "schema_version": 9})] * 5
    messages = good + late_within + beyond + duplicate + bad
    rng.shuffle(messages)
    keyed = [(f"k{i % 97}".encode(), v) for i, v in enumerate(messages)]
    assert produce(settings.bootstrap_servers, topic, keyed) == len(messages)

    config = DrainConfig(settings.bootstrap_servers, topic, lake_uri, max_seconds=2.0, chunk_messages=700)
    results = drain_until_idle(config, 3)
    assert_exactly_once(lake_uri, topic, high_watermarks(settings.bootstrap_servers, topic, 3))
    assert sum(r.events for r in results) == len(good) + len(late_within) + len(duplicate)
    assert sum(r.late for r in results) == len(beyond)
    assert sum(r.quarantined for r in results) == len(bad)
    codes: dict[str, int] = {}
    for r in results:
        for code, n in r.quarantined_by_code.items():
            codes[code] = codes.get(code, 0) + n
    assert codes == {"invalid_json": 5, "invalid_utf8": 5, "empty": 5, "unsupported_schema_version": 5}
    # Late (within horizon) events sit in their own event-date partition; duplicates are all kept raw.
    late_day = time.gmtime((now_ms - 50 * HOUR_MS) / 1000)
    day = f"{late_day.tm_year:04d}-{late_day.tm_mon:02d}-{late_day.tm_mday:02d}"
    assert any(str(d) == day for d in partition_dates(lake_uri, LakeTable.EVENTS))
    ids = pl.concat(
        [
            pl.read_parquet(
                read_partition(lake_uri, LakeTable.EVENTS, d).paths,
                columns=["event_id"],
                storage_options=polars_storage_options(lake_uri),
            )
            for d in partition_dates(lake_uri, LakeTable.EVENTS)
        ]
    )["event_id"]
    assert ids.len() - ids.n_unique() == len(duplicate)
    quarantine = pl.concat(
        [
            pl.read_parquet(
                read_partition(lake_uri, LakeTable.QUARANTINE, d).paths,
                columns=["value"],
                storage_options=polars_storage_options(lake_uri),
            )
            for d in partition_dates(lake_uri, LakeTable.QUARANTINE)
        ]
    )
    assert sorted(set(quarantine["value"].to_list())) == sorted(set(bad))
    assert drain(config).status == "idle"


def test_overlapping_drains_never_land_an_offset_twice(kafka_topic, settings, lake_uri) -> None:
    topic = kafka_topic("overlap", partitions=6)
    values = [valid(event("product_view", ts_ms=NOW_MS)) for _ in range(20_000)]
    produce(settings.bootstrap_servers, topic, [(f"k{i}".encode(), v) for i, v in enumerate(values)])
    config = DrainConfig(settings.bootstrap_servers, topic, lake_uri, max_seconds=0.5, chunk_messages=2000)
    statuses: list[str] = []

    def worker() -> None:
        for _ in range(40):
            statuses.append(drain(config).status)

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    drain_until_idle(config, 6)
    assert "busy" in statuses, "the drains never overlapped; the test proves nothing"
    assert_exactly_once(lake_uri, topic, high_watermarks(settings.bootstrap_servers, topic, 6))
    assert gc.isenabled(), "a drain left the cyclic garbage collector paused"


def test_kill_9_mid_stream_repeatedly_loses_and_doubles_nothing(kafka_topic, settings, lake_uri) -> None:
    topic = kafka_topic("kill9", partitions=6)
    rng = random.Random(11)
    total = 120_000
    values = [valid(event(rng.choice(EVENT_TYPES), ts_ms=NOW_MS)) for _ in range(2000)]

    def producer() -> None:
        for start in range(0, total, 10_000):
            produce(
                settings.bootstrap_servers,
                topic,
                [(f"k{i}".encode(), values[i % len(values)]) for i in range(start, start + 10_000)],
            )
            time.sleep(0.3)

    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    argv = [
        sys.executable,
        "-m",
        "shoppulse.lake",
        "drain",
        "--loop",
        "--interval",
        "0.05",
        "--max-seconds",
        "0.7",
        "--chunk-messages",
        "1500",
        "--topic",
        topic,
        "--lake-dir",
        str(lake_uri),
    ]
    feeder = threading.Thread(target=producer)
    feeder.start()
    kills = 0
    while feeder.is_alive() or kills < 6 or (table_version(lake_uri) < 4 and kills < 30):
        proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        assert proc.stdout is not None
        # Wait for a drain that landed messages (at most 20 drains: the topic may be drained already): it is
        # running for real now. On a busy machine a new consumer's first drains often land nothing.
        for _, line in zip(range(20), proc.stdout, strict=False):
            if json.loads(line)["messages"] > 0:
                break
        time.sleep(rng.uniform(0.0, 1.5))  # then die at a random point of a later drain
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        kills += 1
    feeder.join()
    assert kills >= 4 and table_version(lake_uri) >= 4, "the killed drains did too little to prove anything"
    config = DrainConfig(settings.bootstrap_servers, topic, lake_uri, max_seconds=5.0)
    drain_until_idle(config, 6)
    hw = high_watermarks(settings.bootstrap_servers, topic, 6)
    assert sum(hw.values()) == total
    assert_exactly_once(lake_uri, topic, hw)
    assert sum(landed_offsets(lake_uri).values()) == total
