"""The `kafka_drain` sensor: every tick, drain Kafka into the lake and report what changed.

The drain itself is plain Python (:mod:`shoppulse.lake.drain`); this sensor only runs it and turns
the lake's commit log into Dagster events. Its cursor is the last lake commit it reported, so a tick
that fails (or times out) is simply reported again by the next one: the drain has already made its
commit durable, and materializing a partition twice is harmless.
"""

from __future__ import annotations

import datetime as dt

import psycopg
from dagster import (
    AssetMaterialization,
    DefaultSensorStatus,
    MetadataValue,
    SensorEvaluationContext,
    SensorResult,
    sensor,
)

from assets.raw import RAW_EVENTS_KEY
from resources import KafkaResource, LakeResource, PostgresResource
from shoppulse.lake.changes import LakeChanges, changes_since
from shoppulse.lake.drain import DrainConfig, DrainResult, drain
from shoppulse.lake.layout import LakeTable
from shoppulse.settings import get_settings
from shoppulse.warehouse.ingest_progress import record_progress

DRAIN_INTERVAL_SECONDS = 5
DRAIN_BUDGET_SECONDS = 3.0


def drain_config(kafka: KafkaResource, lake: LakeResource) -> DrainConfig:
    return DrainConfig.from_settings(
        get_settings(),
        bootstrap_servers=kafka.bootstrap_servers,
        topic=kafka.events_topic,
        lake_dir=lake.path,
        max_seconds=DRAIN_BUDGET_SECONDS,
    )


def raw_materializations(changes: LakeChanges, result: DrainResult) -> list[AssetMaterialization]:
    """One materialization per event date that received rows since the cursor."""
    events = changes.rows.get(LakeTable.EVENTS, {})
    quarantined = sum(changes.quarantined_by_code.values())
    return [
        AssetMaterialization(
            asset_key=RAW_EVENTS_KEY,
            partition=date.isoformat(),
            metadata={
                "rows_added": MetadataValue.int(rows),
                "lake_version": MetadataValue.int(changes.seq),
                "messages_drained": MetadataValue.int(changes.messages),
                "quarantined": MetadataValue.int(quarantined),
                "quarantined_by_reason": MetadataValue.json(changes.quarantined_by_code),
                "beyond_horizon": MetadataValue.int(sum(changes.rows.get(LakeTable.LATE, {}).values())),
                "consumer_lag": MetadataValue.int(result.lag),
                "next_offsets": MetadataValue.json({str(p): o for p, o in sorted(result.next_offsets.items())}),
                "late_arrival": MetadataValue.bool(date < dt.datetime.now(dt.UTC).date()),
            },
        )
        for date, rows in sorted(events.items())
    ]


@sensor(
    name="kafka_drain",
    minimum_interval_seconds=DRAIN_INTERVAL_SECONDS,
    default_status=DefaultSensorStatus.RUNNING,
    description=(
        "Drains the events topic into the Parquet lake (effectively once: offsets live in the lake's "
        "commit log) and materializes the raw_events partitions that received rows."
    ),
)
def kafka_drain(
    context: SensorEvaluationContext, kafka: KafkaResource, lake: LakeResource, warehouse: PostgresResource
) -> SensorResult:
    cursor = int(context.cursor or 0)
    result = drain(drain_config(kafka, lake))
    if result.status == "busy":
        context.log.info("lake is locked by an overlapping drain; reporting commits only")
    elif result.status == "drained":
        context.log.info(
            f"drained {result.messages} messages into commit {result.seq}: {result.events} events, "
            f"{result.late} beyond horizon, {result.quarantined} quarantined in {result.seconds:.2f}s; lag {result.lag}"
        )
    if result.high_watermarks:
        try:
            record_progress(
                warehouse.database_url, kafka.events_topic, result.next_offsets, result.high_watermarks, result.seq
            )
        except (psycopg.Error, OSError) as exc:  # advisory only: the lake commit is what counts
            context.log.warning(f"could not record ingest progress: {exc}")
    changes = changes_since(lake.path, cursor)
    return SensorResult(asset_events=raw_materializations(changes, result), cursor=str(changes.seq))
