"""The kafka_drain sensor, evaluated with a test instance against the real broker and database."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

import psycopg
from dagster import AssetKey, AssetMaterialization, DagsterRunStatus, build_sensor_context, instance_for_test
from dagster._core.test_utils import create_run_for_test

from pipelines.definitions import defs
from pipelines.ingest import drain_sensors, kafka_drain
from resources import KafkaResource, LakeResource, PostgresResource
from shoppulse.lake import committed_offsets
from shoppulse.warehouse.db import migrate
from tests.lake.factories import event, valid
from tests.lake.helpers import produce, produce_to_partition

DAY_MS = 86_400_000


def test_sensor_drains_reports_partitions_and_moves_its_cursor(kafka_topic, pg_database, settings, tmp_path: Path):
    topic = kafka_topic("sensor", partitions=2)
    database_url = pg_database()
    migrate(database_url)
    now_ms = int(time.time() * 1000)
    today = dt.datetime.fromtimestamp(now_ms / 1000, dt.UTC).date()
    two_days_ago = today - dt.timedelta(days=2)
    fresh = [valid(event("page_view", ts_ms=now_ms - 1000)) for _ in range(30)]
    late = [valid(event("page_view", ts_ms=now_ms - 2 * DAY_MS)) for _ in range(5)]
    produce(settings.bootstrap_servers, topic, [(b"k", v) for v in [*fresh, *late, b"not json"]])
    resources = {
        "kafka": KafkaResource(bootstrap_servers=settings.bootstrap_servers, events_topic=topic),
        "lake": LakeResource(lake_dir=str(tmp_path)),
        "warehouse": PostgresResource(database_url=database_url),
    }
    with instance_for_test() as instance:
        tick = kafka_drain.evaluate_tick(build_sensor_context(instance=instance, resources=resources, definitions=defs))
        assert tick.cursor == "1"
        materializations = [e for e in tick.asset_events if isinstance(e, AssetMaterialization)]
        by_partition = {m.partition: m.metadata for m in materializations}
        assert set(by_partition) == {today.isoformat(), two_days_ago.isoformat()}
        assert by_partition[today.isoformat()]["rows_added"].value == 30
        assert by_partition[two_days_ago.isoformat()]["rows_added"].value == 5
        assert by_partition[two_days_ago.isoformat()]["late_arrival"].value is True
        assert by_partition[today.isoformat()]["quarantined"].value == 1
        assert by_partition[today.isoformat()]["quarantined_by_reason"].value == {"invalid_json": 1}
        assert by_partition[today.isoformat()]["consumer_lag"].value == 0

        with psycopg.connect(database_url) as conn:
            rows = conn.execute(
                "SELECT sum(next_offset), sum(high_watermark), sum(lag), max(lake_version) "
                "FROM analytics.ingest_progress WHERE topic = %s",
                (topic,),
            ).fetchone()
        assert rows == (36, 36, 0, 1)

        # One rollups run per stale partition: same-day rollups where rows landed, users through the MAU
        # window up to today, ingest_quality where a message was quarantined.
        runs = {r.partition_key: sorted(k.to_user_string() for k in r.asset_selection) for r in tick.run_requests}
        same_day = ["customers", "funnel", "fx_rates", "products", "sales", "users"]
        yesterday = today - dt.timedelta(days=1)
        assert runs == {
            two_days_ago.isoformat(): same_day,
            yesterday.isoformat(): ["users"],
            today.isoformat(): sorted([*same_day, "ingest_quality"]),
        }
        assert all(r.run_key.endswith(":lake-1") for r in tick.run_requests)
        checks = {r.partition_key: [k.name for k in r.asset_check_keys or []] for r in tick.run_requests}
        assert checks[today.isoformat()] == ["net_sales_add_up"]  # cheap checks only, every 5 s
        assert checks[yesterday.isoformat()] == []

        idle = kafka_drain.evaluate_tick(
            build_sensor_context(instance=instance, cursor="1", resources=resources, definitions=defs)
        )
        assert idle.cursor == "1" and not idle.asset_events and not idle.run_requests

        # A tick whose result was never stored (timeout, crash) is reported again by the next one, except
        # for partitions whose waiting run already covers what is stale: that run will read the new rows.
        create_run_for_test(
            instance,
            job_name="rollups",
            status=DagsterRunStatus.NOT_STARTED,
            tags={"shoppulse/trigger": "kafka_drain", "dagster/partition": today.isoformat()},
            asset_selection=frozenset(AssetKey(name) for name in runs[today.isoformat()]),
        )
        replay = kafka_drain.evaluate_tick(
            build_sensor_context(instance=instance, cursor="0", resources=resources, definitions=defs)
        )
        assert replay.cursor == "1"
        assert {e.partition for e in replay.asset_events} == {today.isoformat(), two_days_ago.isoformat()}
        assert {r.partition_key for r in replay.run_requests} == {two_days_ago.isoformat(), yesterday.isoformat()}


def test_shard_sensors_drain_their_partitions_and_coalesce_run_requests(
    kafka_topic, pg_database, settings, tmp_path: Path
):
    topic = kafka_topic("sharded", partitions=2)
    database_url = pg_database()
    migrate(database_url)
    now_ms = int(time.time() * 1000)
    today = dt.datetime.fromtimestamp(now_ms / 1000, dt.UTC).date().isoformat()
    for partition, count in ((0, 7), (1, 11)):
        producer_messages = [(b"k", valid(event("page_view", ts_ms=now_ms - 1000))) for _ in range(count)]
        produce_to_partition(settings.bootstrap_servers, topic, partition, producer_messages)
    resources = {
        "kafka": KafkaResource(bootstrap_servers=settings.bootstrap_servers, events_topic=topic),
        "lake": LakeResource(lake_dir=str(tmp_path)),
        "warehouse": PostgresResource(database_url=database_url),
    }
    first, second = drain_sensors(2)
    assert (first.name, second.name) == ("kafka_drain_shard_0_of_2", "kafka_drain_shard_1_of_2")
    assert [s.name for s in drain_sensors(1)] == ["kafka_drain"]
    with instance_for_test() as instance:
        tick = first.evaluate_tick(build_sensor_context(instance=instance, resources=resources, definitions=defs))
        assert [m.metadata["rows_added"].value for m in tick.asset_events] == [7]  # partition 0 only
        assert committed_offsets(tmp_path, topic) == {0: 7}
        (request,) = [r for r in tick.run_requests if r.partition_key == today]
        create_run_for_test(  # shard 0's run for today is waiting ...
            instance,
            job_name="rollups",
            status=DagsterRunStatus.NOT_STARTED,
            tags={**request.tags, "dagster/partition": today},
            asset_selection=frozenset(request.asset_selection or []),
        )
        other = second.evaluate_tick(build_sensor_context(instance=instance, resources=resources, definitions=defs))
        assert [m.metadata["rows_added"].value for m in other.asset_events] == [11]  # its own commit only
        assert committed_offsets(tmp_path, topic) == {0: 7, 1: 11}
        # ... so shard 1's request for the same partition coalesces into it (that run reads both shards' rows).
        assert today not in {r.partition_key for r in other.run_requests}
