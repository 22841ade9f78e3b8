"""Lag measured at the broker (independently of any drain), and the stall verdict built on it."""

from __future__ import annotations

import pytest

from shoppulse.lake.lag import BrokerUnavailableError, IngestWatch, LagReport, PartitionLag, broker_lag
from shoppulse.stack.processes import free_port
from tests.lake.helpers import produce


def test_broker_lag_counts_what_the_lake_has_not_read(settings, kafka_topic) -> None:
    topic = kafka_topic("lag", partitions=3)
    produce(settings.bootstrap_servers, topic, [(f"k{i}".encode(), b"{}") for i in range(30)])
    report = broker_lag(settings.bootstrap_servers, topic, {}, timeout=10)
    assert [p.partition for p in report.partitions] == [0, 1, 2]
    assert report.total_lag == sum(p.high_watermark for p in report.partitions) == 30
    first = report.partitions[0]
    caught_up = broker_lag(settings.bootstrap_servers, topic, {first.partition: first.high_watermark}, timeout=10)
    assert caught_up.partitions[0].lag == 0
    assert caught_up.total_lag == 30 - first.high_watermark


def test_unreachable_broker_is_an_error_not_zero_lag() -> None:
    with pytest.raises(BrokerUnavailableError):
        broker_lag(f"127.0.0.1:{free_port()}", "shop.events", {}, timeout=1)


def report(at: float, lake_offset: int, high_watermark: int = 100) -> LagReport:
    return LagReport("t", (PartitionLag(0, high_watermark, lake_offset),), measured_at=at)


def test_ingest_watch_stalls_only_when_the_lake_stops_moving_behind_the_broker() -> None:
    watch = IngestWatch(threshold_seconds=10)
    assert not watch.observe(report(0, 10)).stalled  # the first observation starts the clock
    assert not watch.observe(report(9, 10)).stalled
    verdict = watch.observe(report(11, 10))
    assert verdict.stalled and verdict.stalled_seconds == 11 and verdict.last_progress_at == 0
    assert not watch.observe(report(12, 20)).stalled  # the lake moved
    assert watch.observe(report(30, 20)).stalled
    caught_up = watch.observe(report(31, 100))
    assert not caught_up.stalled and caught_up.stalled_seconds == 0
    assert not watch.observe(report(100, 100)).stalled  # nothing waiting: idle, not stalled
