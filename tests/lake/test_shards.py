"""Sharded drains into one Delta table, and the refusal of a writer whose offsets went stale."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time

import pytest

from shoppulse.lake import committed_offsets, table_version
from shoppulse.lake import drain as drain_module
from shoppulse.lake.drain import DrainConfig, drain, drain_unlocked, shard_partitions
from tests.lake.factories import EVENT_TYPES, NOW_MS, event, valid
from tests.lake.helpers import assert_exactly_once, high_watermarks, produce
from tests.lake.test_drain import drain_until_idle


def test_shards_own_fixed_disjoint_partition_subsets() -> None:
    shards = [shard_partitions(range(6), i, 4) for i in range(4)]
    assert shards == [(0, 4), (1, 5), (2,), (3,)]
    assert sorted(p for s in shards for p in s) == list(range(6))
    with pytest.raises(ValueError):
        shard_partitions(range(6), 4, 4)


def test_a_drain_whose_offsets_went_stale_is_refused_and_lands_nothing(
    kafka_topic, settings, lake_uri, monkeypatch: pytest.MonkeyPatch
) -> None:
    topic = kafka_topic("zombie", partitions=2)
    produce(settings.bootstrap_servers, topic, [(f"k{i}".encode(), valid(event("page_view"))) for i in range(500)])
    config = DrainConfig(settings.bootstrap_servers, topic, lake_uri, max_seconds=15.0)
    rival = DrainConfig(settings.bootstrap_servers, topic, lake_uri, max_seconds=15.0, partitions=(0, 1))
    real_commit = drain_module.commit_files
    rival_results = []

    def rival_commits_first(table, adds, offsets=None, metadata=None):  # type: ignore[no-untyped-def]
        # The zombie has read its offsets and landed its files; meanwhile another writer (after a
        # rebalance, say) drains the same partitions and commits first.
        monkeypatch.setattr(drain_module, "commit_files", real_commit)
        rival_results.append(drain_unlocked(rival))
        return real_commit(table, adds, offsets=offsets, metadata=metadata)

    monkeypatch.setattr(drain_module, "commit_files", rival_commits_first)
    zombie = drain(config)
    assert [r.status for r in rival_results] == ["drained"], zombie
    assert rival_results[0].messages == 500
    assert zombie.status == "refused"
    assert table_version(lake_uri) == rival_results[0].seq == 1
    assert drain(config).status == "idle"
    assert_exactly_once(lake_uri, topic, high_watermarks(settings.bootstrap_servers, topic, 2))


def test_two_shards_at_once_one_killed_repeatedly_land_every_offset_once(kafka_topic, settings, lake_uri) -> None:
    topic = kafka_topic("shards", partitions=4)
    rng = random.Random(5)
    total = 40_000
    values = [valid(event(rng.choice(EVENT_TYPES), ts_ms=NOW_MS)) for _ in range(1000)]

    def producer() -> None:
        for start in range(0, total, 5_000):
            produce(
                settings.bootstrap_servers,
                topic,
                [(f"k{i}".encode(), values[i % len(values)]) for i in range(start, start + 5_000)],
            )
            time.sleep(0.3)

    def argv(shard: str) -> list[str]:
        return [
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
            "--shard",
            shard,
            "--partitions",
            "4",
        ]

    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    steady = subprocess.Popen(argv("0/2"), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    feeder = threading.Thread(target=producer)
    feeder.start()
    kills = 0
    try:
        while feeder.is_alive() or kills < 3:
            victim = subprocess.Popen(
                argv("1/2"), env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
            )
            assert victim.stdout is not None
            victim.stdout.readline()  # its first drain finished
            time.sleep(rng.uniform(0.0, 1.0))
            os.kill(victim.pid, signal.SIGKILL)
            victim.wait()
            kills += 1
    finally:
        feeder.join()
        steady.terminate()
        steady.wait(30)
    for shard in ((0, 2), (1, 2)):
        drain_until_idle(DrainConfig(settings.bootstrap_servers, topic, lake_uri, max_seconds=5.0, shard=shard), 4)
    hw = high_watermarks(settings.bootstrap_servers, topic, 4)
    assert sum(hw.values()) == total
    assert_exactly_once(lake_uri, topic, hw)
    assert committed_offsets(lake_uri, topic) == hw
