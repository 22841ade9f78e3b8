"""The instance storage of dagster.yaml: PostgreSQL over kept connections, per-partition events in batches."""

from __future__ import annotations

from collections.abc import Callable

import psycopg
import pytest
from dagster import (
    AssetKey,
    BackfillPolicy,
    DagsterEventType,
    DagsterInstance,
    DailyPartitionsDefinition,
    MaterializeResult,
    asset,
    instance_for_test,
    materialize,
)
from dagster._core.test_utils import create_run_for_test
from psycopg.conninfo import conninfo_to_dict

from pipelines.storage import PooledPostgresStorage, project_storage_config
from shoppulse.settings import Settings


def _backends(settings: Settings, database_url: str) -> set[int]:
    """Pids of the server processes connected to the database of `database_url`."""
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s", (conninfo_to_dict(database_url)["dbname"],)
        ).fetchall()
    return {pid for (pid,) in rows}


def test_events_reuse_the_kept_connections(pg_database: Callable[[], str], settings: Settings) -> None:
    url = pg_database()
    with instance_for_test(overrides={"storage": project_storage_config(url)}) as instance:
        assert isinstance(instance.get_ref().storage, PooledPostgresStorage)
        from_ref = DagsterInstance.from_ref(instance.get_ref())  # how run workers build theirs
        assert isinstance(from_ref.get_ref().storage, PooledPostgresStorage)
        run = create_run_for_test(instance, job_name="storage_check")
        instance.report_engine_event("first", run)
        kept = _backends(settings, url)
        assert kept, "no connection was kept open"
        for number in range(30):
            instance.report_engine_event(f"event {number}", run)
        assert _backends(settings, url) == kept  # no new backend was started for the 30 events
        messages = [
            r.dagster_event.message for r in instance.all_logs(run.run_id, of_type=DagsterEventType.ENGINE_EVENT)
        ]
        assert messages == ["first", *[f"event {n}" for n in range(30)]]


days = DailyPartitionsDefinition(start_date="2025-01-01")


@asset(partitions_def=days, backfill_policy=BackfillPolicy.single_run())
def ranged() -> MaterializeResult:
    return MaterializeResult(metadata={"rows": 1})


def test_a_range_run_records_every_partition_with_batched_events(
    pg_database: Callable[[], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DAGSTER_EVENT_BATCH_SIZE", "4")  # 10 partitions: batches of 4, 4 and 2
    with instance_for_test(overrides={"storage": project_storage_config(pg_database())}) as instance:
        result = materialize(
            [ranged],
            instance=instance,
            tags={
                "dagster/asset_partition_range_start": "2025-01-03",
                "dagster/asset_partition_range_end": "2025-01-12",
            },
        )
        assert result.success
        expected = {f"2025-01-{d:02d}" for d in range(3, 13)}
        assert instance.get_materialized_partitions(AssetKey("ranged")) == expected
        planned = instance.all_logs(result.run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION_PLANNED)
        assert {r.dagster_event.event_specific_data.partition for r in planned} == expected
