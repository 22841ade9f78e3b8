"""The `dagster_storage_retention` schedule: keeps Dagster's run storage, event log and check history
bounded at a 5-second rollup cadence (policy in `shoppulse.retention`; ticks are purged by the daemon).

Runs are deleted through the public API (`DagsterInstance.delete_run` removes their events). Runless
asset events (the drain sensor's raw_events reports) and check-execution rows have no public delete,
so they are removed from the SQL event-log storage directly, exactly as Dagster deletes a run's events
(the event rows, then their asset_event_tags); any other storage is left alone.
"""

import datetime as dt
import time

import sqlalchemy as db
from dagster import (
    DagsterEventType,
    DagsterInstance,
    DefaultScheduleStatus,
    OpExecutionContext,
    RunsFilter,
    ScheduleDefinition,
    in_process_executor,
    job,
    op,
)
from dagster._core.storage.dagster_run import DagsterRunStatus
from dagster._core.storage.event_log.base import AssetRecordsFilter
from dagster._core.storage.event_log.schema import (
    AssetCheckExecutionsTable,
    AssetEventTagsTable,
    SqlEventLogStorageTable,
)
from dagster._core.storage.event_log.sql_event_log import SqlEventLogStorage

from shoppulse.retention import FINISHED, RetentionPolicy, RunInfo, StoredEvent, runs_to_delete, superseded_events

RETENTION_CRON = "*/10 * * * *"
RUNLESS_RUN_ID = ""
ASSET_EVENT_TYPES = (DagsterEventType.ASSET_MATERIALIZATION.value, DagsterEventType.ASSET_OBSERVATION.value)


def latest_materialization_runs(instance: DagsterInstance) -> set[str]:
    """Run ids holding the newest materialization of some asset partition (or unpartitioned asset)."""
    runs: set[str] = set()
    for key in instance.get_asset_keys():
        latest = instance.get_latest_materialization_event(key)
        if latest is not None:
            runs.add(latest.run_id)
        by_partition = instance.get_latest_storage_id_by_partition(key, DagsterEventType.ASSET_MATERIALIZATION)
        ids = sorted(by_partition.values())
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            records = instance.fetch_materializations(AssetRecordsFilter(key, storage_ids=chunk), limit=len(chunk))
            runs.update(record.event_log_entry.run_id for record in records.records)
    runs.discard(RUNLESS_RUN_ID)
    return runs


def prune_runs(instance: DagsterInstance, policy: RetentionPolicy, now: float) -> int:
    """Delete finished runs past their retention that hold no latest materialization. Returns how many.

    Pages through the oldest runs first, so runs that must stay (they hold the latest materialization
    of some partition) never stop the pass from reaching deletable ones behind them.
    """
    newest_deletable = dt.datetime.fromtimestamp(now - policy.successful_runs_days * 86_400, dt.UTC)
    finished = RunsFilter(statuses=[DagsterRunStatus(s) for s in sorted(FINISHED)], updated_before=newest_deletable)
    protected: set[str] | None = None
    deleted = 0
    cursor = None
    while deleted < policy.batch_size:
        records = instance.get_run_records(filters=finished, limit=policy.batch_size, ascending=True, cursor=cursor)
        if not records:
            break
        if protected is None:
            protected = latest_materialization_runs(instance)
        runs = [RunInfo(r.dagster_run.run_id, r.dagster_run.status.value, r.end_time) for r in records]
        doomed = runs_to_delete(runs, protected, now, policy)[: policy.batch_size - deleted]
        for run_id in doomed:
            instance.delete_run(run_id)
            deleted += 1
        gone = set(doomed)
        kept = [run.run_id for run in runs if run.run_id not in gone]
        if kept:
            cursor = kept[-1]  # the next page starts after the newest run that stays
        elif len(records) < policy.batch_size:
            break
    return deleted


def _epoch(stored: dt.datetime) -> float:
    """Epoch seconds of a timestamp Dagster's SQL storage keeps as naive UTC."""
    return stored.replace(tzinfo=dt.UTC).timestamp() if stored.tzinfo is None else stored.timestamp()


def _superseded_rows(
    conn: db.Connection,
    table: db.Table,
    timestamp: db.Column,
    subject: tuple[db.Column, ...],
    where: db.ColumnElement[bool],
    policy: RetentionPolicy,
    now: float,
) -> list[int]:
    """Ids of `table` rows (among `where`) older than the policy that are not the newest of their subject.

    Reads a bounded page of the oldest rows, then the newest id of each subject they belong to.
    """
    cutoff = dt.datetime.fromtimestamp(now - policy.asset_events_days * 86_400, dt.UTC).replace(tzinfo=None)
    old = conn.execute(
        db.select(table.c.id, timestamp, *subject)
        .where(where, timestamp < cutoff)
        .order_by(table.c.id)
        .limit(policy.batch_size * 4)
    ).fetchall()
    if not old:
        return []
    newest = conn.execute(
        db.select(*subject, db.func.max(table.c.id))
        .where(where, subject[0].in_({row[2] for row in old}))
        .group_by(*subject)
    ).fetchall()
    events = [StoredEvent(row[0], tuple(v or "" for v in row[2:]), _epoch(row[1])) for row in old]
    events += [StoredEvent(int(row[-1]), tuple(v or "" for v in row[:-1]), now) for row in newest]
    return superseded_events(events, now, policy)


def prune_runless_asset_events(storage: SqlEventLogStorage, policy: RetentionPolicy, now: float) -> int:
    """Delete superseded runless asset events older than the policy (keeping the newest per partition)."""
    table = SqlEventLogStorageTable
    runless = db.and_(table.c.run_id == RUNLESS_RUN_ID, table.c.dagster_event_type.in_(ASSET_EVENT_TYPES))
    with storage.index_connection() as conn:
        subject = (table.c.asset_key, table.c.partition)
        doomed = _superseded_rows(conn, table, table.c.timestamp, subject, runless, policy, now)
        if doomed:
            conn.execute(table.delete().where(table.c.id.in_(doomed)))
            conn.execute(AssetEventTagsTable.delete().where(AssetEventTagsTable.c.event_id.in_(doomed)))
    return len(doomed)


def prune_check_executions(storage: SqlEventLogStorage, policy: RetentionPolicy, now: float) -> int:
    """Delete check-execution rows older than the policy, keeping the newest per check and partition."""
    table = AssetCheckExecutionsTable
    if not storage.has_table(table.name):
        return 0
    with storage.index_connection() as conn:
        subject = (table.c.asset_key, table.c.check_name, table.c.partition)
        doomed = _superseded_rows(conn, table, table.c.create_timestamp, subject, db.true(), policy, now)
        if doomed:
            conn.execute(table.delete().where(table.c.id.in_(doomed)))
    return len(doomed)


def prune_dagster_storage(
    instance: DagsterInstance, policy: RetentionPolicy, now: float | None = None
) -> dict[str, int]:
    """One retention pass; returns how many rows of each kind were deleted."""
    now = time.time() if now is None else now
    deleted = {"runs": prune_runs(instance, policy, now), "runless_asset_events": 0, "check_executions": 0}
    storage = instance.event_log_storage
    if isinstance(storage, SqlEventLogStorage):
        deleted["runless_asset_events"] = prune_runless_asset_events(storage, policy, now)
        deleted["check_executions"] = prune_check_executions(storage, policy, now)
    return deleted


@op(description="Delete Dagster runs, events and check results past their retention (shoppulse.retention).")
def prune_dagster_storage_op(context: OpExecutionContext) -> None:
    deleted = prune_dagster_storage(context.instance, RetentionPolicy())
    context.log.info(f"retention pass deleted {deleted}")


@job(name="dagster_storage_retention", executor_def=in_process_executor)
def dagster_storage_retention() -> None:
    prune_dagster_storage_op()


dagster_storage_retention_schedule = ScheduleDefinition(
    name="dagster_storage_retention",
    job=dagster_storage_retention,
    cron_schedule=RETENTION_CRON,
    default_status=DefaultScheduleStatus.RUNNING,
    execution_timezone="UTC",
    description="Every 10 minutes: delete finished runs older than 2 days (failures: 7), superseded runless "
    "asset events and check results older than 2 days; keep what holds the latest of each partition.",
)
