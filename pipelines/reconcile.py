"""The `rollup_reconciler` sensor: every partition's serving rows catch up with the lake by themselves.

A killed or failed rollup run is first retried by Dagster (`dagster/max_retries` on the rollups job,
`run_retries` in dagster.yaml). Whatever still lags after that (retries exhausted, a run never
requested, a daemon restart in between) is found here by comparing each partition's ledger row with
the lake, and rerun with backoff (see `shoppulse.rollups.reconcile`). The lagging partitions, their
attempts and next attempt show in each tick's log and in `/health/freshness`.
"""

from __future__ import annotations

import datetime as dt
import time

import psycopg
from dagster import (
    AssetKey,
    DagsterInstance,
    DagsterRunStatus,
    DefaultSensorStatus,
    RunRequest,
    RunsFilter,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)

from assets.jobs import live_check_keys, rollups_job
from assets.partitions import PARTITIONS_START
from resources import LakeResource, PostgresResource
from shoppulse.rollups.reconcile import (
    expected_versions,
    lagging,
    lake_partition_versions,
    ledger_versions,
    load_state,
    plan,
    record_status,
)
from shoppulse.rollups.runner import ensure_migrated

RECONCILE_INTERVAL_SECONDS = 15
TRIGGER_TAG = "shoppulse/trigger"
TRIGGER = "rollup_reconciler"
PARTITION_TAG = "dagster/partition"
IN_FLIGHT = [
    DagsterRunStatus.QUEUED,
    DagsterRunStatus.NOT_STARTED,
    DagsterRunStatus.STARTING,
    DagsterRunStatus.STARTED,
    DagsterRunStatus.CANCELING,
]


def partitions_in_flight(instance: DagsterInstance) -> set[dt.date]:
    """Partitions with a rollups run that is queued or running (it reads the newest lake when it starts)."""
    runs = instance.get_runs(RunsFilter(job_name=rollups_job.name, statuses=IN_FLIGHT))
    days = set()
    for run in runs:
        key = run.tags.get(PARTITION_TAG)
        if key:
            days.add(dt.date.fromisoformat(key))
    return days


@sensor(
    name="rollup_reconciler",
    job=rollups_job,
    minimum_interval_seconds=RECONCILE_INTERVAL_SECONDS,
    default_status=DefaultSensorStatus.RUNNING,
    description=(
        "Requests a rollups run for every partition whose ledger lags the lake (a killed or failed run, "
        "retries exhausted), with exponential backoff per partition so a persistently failing one does not "
        "loop. Lagging partitions are listed in /health/freshness (analytics.rollup_reconcile)."
    ),
)
def rollup_reconciler(
    context: SensorEvaluationContext, lake: LakeResource, warehouse: PostgresResource
) -> SensorResult | SkipReason:
    today = dt.datetime.now(dt.UTC).date()
    expected = expected_versions(lake_partition_versions(lake.path), dt.date.fromisoformat(PARTITIONS_START), today)
    ensure_migrated(warehouse.database_url)
    with psycopg.connect(warehouse.database_url, autocommit=True, connect_timeout=5) as conn:
        lags = lagging(expected, ledger_versions(conn))
        decided = plan(lags, load_state(context.cursor), partitions_in_flight(context.instance), time.time())
        record_status(conn, decided)
    for day, entry in sorted(decided.state.items()):
        assets = sorted(lag.asset for lag in lags if lag.day == day)
        next_at = dt.datetime.fromtimestamp(entry.next_at, dt.UTC)
        status = "run in flight" if day in decided.in_flight else f"next attempt at {next_at:%H:%M:%S}"
        context.log.info(f"{day}: {', '.join(assets)} lag the lake; attempts {entry.attempts}, {status}")
    requests = [
        RunRequest(
            run_key=f"reconcile:{day}:{decided.state[day].attempts}:{int(decided.state[day].lagging_since)}",
            partition_key=day.isoformat(),
            asset_selection=[AssetKey(name) for name in assets],
            asset_check_keys=live_check_keys(assets),
            tags={TRIGGER_TAG: TRIGGER, "shoppulse/reconcile_attempt": str(decided.state[day].attempts)},
        )
        for day, assets in sorted(decided.requests.items())
    ]
    return SensorResult(run_requests=requests, cursor=decided.cursor())
