"""The rollup assets through Dagster: one partition, a backfill range as ONE run, checks in the UI's
terms (passed / failed), and the CLI's partition-range path."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import psycopg
import pytest
from dagster import (
    AssetKey,
    DagsterEventType,
    DagsterInstance,
    Definitions,
    build_schedule_context,
    instance_for_test,
    materialize,
)
from dagster._core.execution.backfill import BulkActionStatus
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

from assets.backfill import IN_PROCESS_RUNS, run_asset_backfill
from assets.checks import CHECK_DAYS_TAG, RAW_CHECKS_DEFS, ROLLUP_CHECKS
from assets.jobs import ROLLUPS_JOB_NAME, live_check_keys, rollup_checks_hourly, rollup_checks_job, rollups_job
from assets.raw import raw_events
from assets.rollups import ROLLUP_ASSETS
from resources import LakeResource, PostgresResource
from shoppulse.rollups import catalog
from tests.rollups.conftest import fetch
from tests.rollups.scenario import D1, D2

ALL_ROLLUPS = list(catalog.ALL_ROLLUPS)


def definitions(lake: Path, database: str) -> Definitions:
    return Definitions(
        assets=[raw_events, *ROLLUP_ASSETS],
        asset_checks=[*RAW_CHECKS_DEFS, *ROLLUP_CHECKS],
        jobs=[rollups_job, rollup_checks_job],
        resources={"lake": LakeResource(lake_dir=str(lake)), "warehouse": PostgresResource(database_url=database)},
    )


@pytest.fixture
def instance() -> DagsterInstance:
    with instance_for_test() as instance:
        yield instance


def materialized_partitions(instance: DagsterInstance, asset: str) -> set[str]:
    return instance.get_materialized_partitions(AssetKey(asset))


def check_results(instance: DagsterInstance, run_id: str) -> dict[tuple[str, str], bool]:
    records = instance.get_records_for_run(run_id, of_type=DagsterEventType.ASSET_CHECK_EVALUATION).records
    results = {}
    for record in records:
        evaluation = record.event_log_entry.dagster_event.event_specific_data
        results[(evaluation.asset_key.to_user_string(), evaluation.check_name)] = evaluation.passed
    return results


def test_one_partition_materializes_every_rollup(scenario_lake: Path, database: str, instance: DagsterInstance) -> None:
    result = materialize(
        ROLLUP_ASSETS,
        partition_key=D1.isoformat(),
        instance=instance,
        resources={
            "lake": LakeResource(lake_dir=str(scenario_lake)),
            "warehouse": PostgresResource(database_url=database),
        },
    )
    assert result.success
    for asset in ALL_ROLLUPS:
        assert materialized_partitions(instance, asset) == {D1.isoformat()}
    assert fetch(database, "SELECT count(*) FROM analytics.materializations WHERE partition_date = %s", D1) == [(7,)]
    assert fetch(database, "SELECT count(*) FROM analytics.fx_rates WHERE rate_date = %s", D1) == [(4,)]


def test_backfill_range_is_one_run_and_checks_pass(
    scenario_lake: Path, database: str, instance: DagsterInstance
) -> None:
    job = definitions(scenario_lake, database).resolve_job_def(ROLLUPS_JOB_NAME)
    result = job.execute_in_process(
        instance=instance,
        tags={ASSET_PARTITION_RANGE_START_TAG: D1.isoformat(), ASSET_PARTITION_RANGE_END_TAG: D2.isoformat()},
    )
    assert result.success
    assert len(instance.get_run_records()) == 1
    for asset in ALL_ROLLUPS:
        assert materialized_partitions(instance, asset) == {D1.isoformat(), D2.isoformat()}, asset
    checks = check_results(instance, result.run_id)
    assert checks == {
        ("raw_events", "schema_matches_contract"): True,
        ("raw_events", "no_null_keys"): True,
        ("raw_events", "duplicate_rate"): False,  # 1 copy in 16 events of D1+D2 > 5%: a WARN in the UI
        ("products", "net_sales_add_up"): True,
        **{(asset, "matches_lake_recompute"): True for asset in ALL_ROLLUPS},
    }
    assert fetch(database, "SELECT count(DISTINCT partition_date) FROM analytics.materializations") == [(2,)]


def test_check_job_finds_tampered_serving_rows(scenario_lake: Path, database: str, instance: DagsterInstance) -> None:
    defs = definitions(scenario_lake, database)
    assert defs.resolve_job_def(ROLLUPS_JOB_NAME).execute_in_process(instance=instance, partition_key=D2.isoformat())
    checks_job = defs.resolve_job_def(rollup_checks_job.name)
    clean = checks_job.execute_in_process(instance=instance, tags={CHECK_DAYS_TAG: D2.isoformat()})
    assert all(
        passed for (_, name), passed in check_results(instance, clean.run_id).items() if name != "duplicate_rate"
    )
    with psycopg.connect(database, autocommit=True) as conn:
        conn.execute("UPDATE analytics.sales_daily SET net_sales = net_sales + 1 WHERE currency = 'USD'")
    result = checks_job.execute_in_process(instance=instance, tags={CHECK_DAYS_TAG: D2.isoformat()})
    checks = check_results(instance, result.run_id)
    assert checks[("sales", "matches_lake_recompute")] is False
    assert checks[("products", "net_sales_add_up")] is False
    assert checks[("users", "matches_lake_recompute")] is True
    assert materialized_partitions(instance, "sales") == {D2.isoformat()}  # the check job materialized nothing


def test_live_runs_keep_only_the_cheap_check() -> None:
    assert [k.name for k in live_check_keys(["sales", "users"])] == ["net_sales_add_up"]
    assert live_check_keys(["users"]) == []


def test_asset_backfill_like_the_ui_is_one_run_over_the_range(
    scenario_lake: Path, database: str, monkeypatch: pytest.MonkeyPatch, settings
) -> None:
    """The UI's backfill path (daemon iteration over a PartitionBackfill) against the real Definitions."""
    monkeypatch.setenv("SHOPPULSE_LAKE_URI", str(scenario_lake))
    monkeypatch.setenv("DATABASE_URL", database)
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", settings.bootstrap_servers)
    monkeypatch.setenv("SHOPPULSE_EVENTS_TOPIC", settings.events_topic)
    with instance_for_test(overrides=IN_PROCESS_RUNS) as instance:
        outcome = run_asset_backfill(instance, ALL_ROLLUPS, [D1.isoformat(), D2.isoformat()])
        assert outcome.status == BulkActionStatus.COMPLETED_SUCCESS
        assert len(outcome.run_ids) == 1  # BackfillPolicy.single_run: the range and all rollups in one run
        run = instance.get_run_by_id(outcome.run_ids[0])
        assert run is not None
        assert (run.tags[ASSET_PARTITION_RANGE_START_TAG], run.tags[ASSET_PARTITION_RANGE_END_TAG]) == (
            D1.isoformat(),
            D2.isoformat(),
        )
        for asset in ALL_ROLLUPS:
            assert materialized_partitions(instance, asset) == {D1.isoformat(), D2.isoformat()}, asset
    assert fetch(database, "SELECT dau FROM analytics.users_daily ORDER BY event_date") == [(5,), (2,)]


def test_hourly_check_schedule_checks_yesterday_and_today() -> None:
    context = build_schedule_context(scheduled_execution_time=dt.datetime(2025, 6, 30, 10, 25, tzinfo=dt.UTC))
    request = rollup_checks_hourly(context)
    assert request.tags[CHECK_DAYS_TAG] == "2025-06-29,2025-06-30"
