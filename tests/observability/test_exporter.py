"""The pipeline exporter, as a real process against the real broker and PostgreSQL: per-partition lag
against the broker, freshness from the ledger, sales from the serving tables, and the metric files of
pipeline processes that have exited."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx
import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from shoppulse.lake import committed_offsets
from shoppulse.lake.drain import DrainConfig, drain
from shoppulse.observability.collectors import LakeLagCollector
from shoppulse.settings import PROJECT_ROOT, Settings
from shoppulse.stack.processes import free_port, stop_pid
from shoppulse.warehouse.db import migrate
from tests.lake.factories import event, valid
from tests.lake.helpers import high_watermarks, produce

RECORD_ONE_RUN = textwrap.dedent(
    """
    from shoppulse.observability import metrics
    with metrics.rollup_run("ingest_quality"):
        pass
    """
)


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


@pytest.fixture
def exporter(stack, settings: Settings, kafka_topic, pg_database, tmp_path: Path):
    """An exporter process over a fresh topic (3 partitions), lake, metrics directory and database."""
    topic = kafka_topic("metrics", partitions=3)
    database_url = pg_database()
    migrate(database_url)
    port = free_port()
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
        "SHOPPULSE_EVENTS_TOPIC": topic,
        "SHOPPULSE_LAKE_DIR": str(tmp_path / "lake"),
        "SHOPPULSE_LAKE_URI": str(tmp_path / "lake"),
        "DATABASE_URL": database_url,
        "SHOPPULSE_METRICS_DIR": str(tmp_path / "metrics"),
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "shoppulse.observability.exporter", "--port", str(port)],
        env=env,
        cwd=PROJECT_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}/metrics"
    deadline = time.monotonic() + 60
    while True:
        try:
            httpx.get(url, timeout=5)
            break
        except httpx.TransportError:
            assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read().decode()  # type: ignore[union-attr]
            time.sleep(0.2)
    yield {"url": url, "topic": topic, "lake": tmp_path / "lake", "db": database_url, "env": env}
    stop_pid(proc.pid, 10)
    proc.wait()


def test_exporter_serves_lag_freshness_sales_and_exited_processes(exporter, settings: Settings) -> None:
    topic, lake = exporter["topic"], exporter["lake"]
    messages = [(f"s{i}".encode(), valid(event())) for i in range(300)]
    assert produce(settings.bootstrap_servers, topic, messages) == 300
    result = drain(DrainConfig(bootstrap_servers=settings.bootstrap_servers, topic=topic, lake_dir=lake))
    assert result.status == "drained" and result.messages == 300
    assert result.written_bytes > 0
    assert produce(settings.bootstrap_servers, topic, messages[:50]) == 50  # not drained: lag 50

    now = dt.datetime.now(dt.UTC)
    with psycopg.connect(exporter["db"], autocommit=True) as conn:
        conn.execute(
            "INSERT INTO analytics.materializations (asset, partition_date, row_count, lake_version,"
            " max_event_ts, materialized_at) VALUES ('sales', '2026-01-01', 3, 1, %s, %s),"
            " ('sales', '2026-01-02', 3, 1, %s, %s)",
            (now - dt.timedelta(hours=2), now - dt.timedelta(hours=1), now - dt.timedelta(minutes=10), now),
        )
        conn.execute(
            "INSERT INTO analytics.sales_daily_reporting VALUES"
            " ('2026-01-01', 'USD', 3, 4, 1000, 0, 0, 1000, 50, 10, 1060),"
            " ('2026-01-02', 'USD', 2, 2, 500, 25, 0, 475, 0, 0, 475)"
        )
    subprocess.run(
        [sys.executable, "-c", RECORD_ONE_RUN],
        env={**exporter["env"], "PROMETHEUS_MULTIPROC_DIR": exporter["env"]["SHOPPULSE_METRICS_DIR"]},
        cwd=PROJECT_ROOT,
        check=True,
        timeout=60,
    )

    values = samples(httpx.get(exporter["url"], timeout=30).text)

    watermarks = high_watermarks(settings.bootstrap_servers, topic, 3)
    offsets = committed_offsets(lake, topic)
    for partition in range(3):
        labels = (("partition", str(partition)), ("topic", topic))
        assert values[("shoppulse_kafka_partition_high_watermark", labels)] == watermarks[partition]
        assert values[("shoppulse_lake_partition_offset", labels)] == offsets[partition]
        assert values[("shoppulse_lake_partition_lag_messages", labels)] == watermarks[partition] - offsets[partition]
    lag_total = sum(v for (name, _), v in values.items() if name == "shoppulse_lake_partition_lag_messages")
    assert lag_total == 50
    assert values[("shoppulse_lake_lag_scrape_error", ())] == 0

    watermark_age = values[("shoppulse_asset_watermark_age_seconds", (("asset", "sales"),))]
    assert 600 <= watermark_age < 600 + 120  # the newest watermark of the two partitions, 10 min old
    assert values[("shoppulse_asset_materialization_age_seconds", (("asset", "sales"),))] < 120
    assert values[("shoppulse_asset_partitions", (("asset", "sales"),))] == 2
    assert values[("shoppulse_sales_orders", ())] == 5
    assert values[("shoppulse_sales_net_sales", (("currency", "USD"),))] == 14.75
    assert values[("shoppulse_sales_total_sales", (("currency", "USD"),))] == 15.35
    assert values[("shoppulse_ledger_scrape_error", ())] == 0

    runs = ("shoppulse_rollup_runs_total", (("group", "ingest_quality"), ("outcome", "success")))
    assert values[runs] == 1  # recorded by a process that has exited


def test_an_unreachable_broker_is_a_scrape_error_gauge_not_a_failed_scrape(tmp_path: Path) -> None:
    collector = LakeLagCollector(f"127.0.0.1:{free_port()}", "shop.events", tmp_path, timeout=1.0)
    families = {family.name: family for family in collector.collect()}
    assert set(families) == {"shoppulse_lake_lag_scrape_error"}
    assert families["shoppulse_lake_lag_scrape_error"].samples[0].value == 1
