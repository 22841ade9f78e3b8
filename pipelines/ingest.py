"""The `kafka_drain` sensor(s): every tick, drain Kafka into the lake and report what changed.

The drain itself is plain Python (:mod:`shoppulse.lake.drain`); this sensor only runs it and turns
the lake's Delta log into Dagster events. Its cursor is the last table version it reported, so a tick
that fails (or times out) is simply reported again by the next one: the drain has already made its
commit durable, and materializing a partition twice is harmless.

With SHOPPULSE_DRAIN_SHARDS=N there are N sensors (`kafka_drain_shard_I_of_N`), each draining the
partitions p with p % N == I and reporting only its own commits; they commit to the same table
concurrently. A rollup run requested by one shard for a partition covers the others' changes while
it waits, so requests for the same partition coalesce (see `rollup_run_requests`).
"""

from __future__ import annotations

import datetime as dt
import time

import psycopg
from dagster import (
    AssetKey,
    AssetMaterialization,
    DagsterInstance,
    DagsterRunStatus,
    DefaultSensorStatus,
    MetadataValue,
    RunRequest,
    RunsFilter,
    SensorDefinition,
    SensorEvaluationContext,
    SensorResult,
    sensor,
)

from assets.jobs import live_check_keys, rollups_job
from assets.partitions import PARTITIONS_START
from assets.raw import RAW_EVENTS_KEY
from resources import KafkaResource, LakeResource, PostgresResource
from shoppulse.lake.changes import LakeChanges, changes_since
from shoppulse.lake.drain import DrainConfig, DrainResult, drain
from shoppulse.lake.layout import LakeTable
from shoppulse.observability.metrics import record_drain, record_drain_error
from shoppulse.rollups.affected import partitions_to_refresh_after_drain, runs_by_partition
from shoppulse.settings import get_settings
from shoppulse.warehouse.ingest_progress import record_progress

DRAIN_INTERVAL_SECONDS = 1
"""Asked of the daemon; it evaluates sensors every ~5 s at best, so this means "every daemon loop". A
value of 5 would skip every other loop whenever the previous tick started a few ms less than 5 s ago."""
DRAIN_BUDGET_SECONDS = 3.0
TRIGGER_TAG = "shoppulse/trigger"
TRIGGER = "kafka_drain"
PARTITION_TAG = "dagster/partition"
WAITING = [DagsterRunStatus.QUEUED, DagsterRunStatus.NOT_STARTED]


def drain_config(kafka: KafkaResource, lake: LakeResource, shard: tuple[int, int] | None = None) -> DrainConfig:
    return DrainConfig.from_settings(
        get_settings(),
        bootstrap_servers=kafka.bootstrap_servers,
        topic=kafka.events_topic,
        lake_dir=lake.path,
        max_seconds=DRAIN_BUDGET_SECONDS,
        shard=shard,
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


def queued_selections(instance: DagsterInstance) -> dict[str, set[str]]:
    """Partition key -> assets already selected by this sensor's runs that have not started yet."""
    waiting: dict[str, set[str]] = {}
    runs = instance.get_runs(RunsFilter(job_name=rollups_job.name, statuses=WAITING, tags={TRIGGER_TAG: TRIGGER}))
    for run in runs:
        partition = run.tags.get(PARTITION_TAG)
        if partition is not None and run.asset_selection is not None:
            waiting.setdefault(partition, set()).update(key.to_user_string() for key in run.asset_selection)
    return waiting


def rollup_run_requests(changes: LakeChanges, instance: DagsterInstance, today: dt.date) -> list[RunRequest]:
    """One run per partition the changes make stale, unless a run that covers it is still waiting.

    A waiting run reads the lake when it starts, so it will see these changes too: at most one queued
    and one running run per partition (the run queue allows one run per partition at a time). The run
    key names the lake commit, so new data is never shadowed by an old key.
    """
    stale = partitions_to_refresh_after_drain(
        {table.value: [d.isoformat() for d in changes.dates(table)] for table in LakeTable},
        last_partition=today,
        first_partition=dt.date.fromisoformat(PARTITIONS_START),
    )
    waiting = queued_selections(instance) if stale else {}
    return [
        RunRequest(
            run_key=f"rollups:{partition}:lake-{changes.seq}",
            partition_key=partition,
            asset_selection=[AssetKey(name) for name in assets],
            asset_check_keys=live_check_keys(assets),
            tags={TRIGGER_TAG: TRIGGER, "shoppulse/lake_version": str(changes.seq)},
        )
        for partition, assets in runs_by_partition(stale).items()
        if not set(assets) <= waiting.get(partition, set())
    ]


def drain_tick(
    context: SensorEvaluationContext,
    kafka: KafkaResource,
    lake: LakeResource,
    warehouse: PostgresResource,
    shard: tuple[int, int] | None = None,
) -> SensorResult:
    """One tick of a drain sensor (of one shard, or of the whole topic)."""
    cursor = int(context.cursor or 0)
    config = drain_config(kafka, lake, shard)
    began = time.monotonic()
    try:
        result = drain(config)
    except Exception:
        record_drain_error(time.monotonic() - began)
        raise
    record_drain(result)
    if result.status == "busy":
        context.log.info("an overlapping drain holds this shard; reporting commits only")
    elif result.status == "refused":
        context.log.warning("another writer committed these partitions first; nothing landed, will retry")
    elif result.status == "drained":
        context.log.info(
            f"drained {result.messages} messages into version {result.seq}: {result.events} events, "
            f"{result.late} beyond horizon, {result.quarantined} quarantined in {result.seconds:.2f}s; lag {result.lag}"
        )
    if result.high_watermarks:
        try:
            record_progress(
                warehouse.database_url, kafka.events_topic, result.next_offsets, result.high_watermarks, result.seq
            )
        except (psycopg.Error, OSError) as exc:  # advisory only: the lake commit is what counts
            context.log.warning(f"could not record ingest progress: {exc}")
    changes = changes_since(lake.path, cursor, config.shard_label if shard is not None else None)
    return SensorResult(
        asset_events=raw_materializations(changes, result),
        run_requests=rollup_run_requests(changes, context.instance, dt.datetime.now(dt.UTC).date()),
        cursor=str(changes.seq),
    )


DESCRIPTION = (
    "Drains the events topic into the lake (a Delta table; effectively once: each partition's offset "
    "is an app transaction committed with the files), materializes the raw_events partitions that "
    "received rows and requests one rollups run per partition that the new rows make stale."
)


def make_drain_sensor(shard: tuple[int, int] | None = None) -> SensorDefinition:
    """The drain sensor of one shard (index, count), or of the whole topic (None)."""
    name = "kafka_drain" if shard is None else f"kafka_drain_shard_{shard[0]}_of_{shard[1]}"

    @sensor(
        name=name,
        job=rollups_job,
        minimum_interval_seconds=DRAIN_INTERVAL_SECONDS,
        default_status=DefaultSensorStatus.RUNNING,
        description=DESCRIPTION if shard is None else f"{DESCRIPTION} Shard {shard[0]} of {shard[1]}.",
    )
    def _drain_sensor(
        context: SensorEvaluationContext, kafka: KafkaResource, lake: LakeResource, warehouse: PostgresResource
    ) -> SensorResult:
        return drain_tick(context, kafka, lake, warehouse, shard)

    return _drain_sensor


def drain_sensors(shards: int | None = None) -> list[SensorDefinition]:
    """One sensor per shard (SHOPPULSE_DRAIN_SHARDS, default 1: the single `kafka_drain`)."""
    count = get_settings().drain_shards if shards is None else shards
    if count <= 1:
        return [make_drain_sensor()]
    return [make_drain_sensor((index, count)) for index in range(count)]


kafka_drain = make_drain_sensor()
