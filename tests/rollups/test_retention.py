"""Retention of Dagster metadata: old runs, superseded runless events and check results go; what holds
the latest materialization of a partition, unfinished runs and recent history stay."""

from __future__ import annotations

import time
from collections.abc import Callable

from dagster import (
    AssetCheckResult,
    AssetKey,
    AssetMaterialization,
    DailyPartitionsDefinition,
    asset,
    asset_check,
    instance_for_test,
    materialize,
)

from assets.retention import prune_dagster_storage
from shoppulse.retention import DAY_SECONDS, RetentionPolicy, RunInfo, StoredEvent, runs_to_delete, superseded_events

NOW = 1_800_000_000.0
POLICY = RetentionPolicy(successful_runs_days=2, failed_runs_days=7, asset_events_days=2)


def test_policy_keeps_recent_unfinished_protected_and_recent_failures() -> None:
    old, older = NOW - 3 * DAY_SECONDS, NOW - 8 * DAY_SECONDS
    runs = [
        RunInfo("old-ok", "SUCCESS", old),
        RunInfo("old-failed", "FAILURE", old),  # failures are kept 7 days
        RunInfo("older-failed", "FAILURE", older),
        RunInfo("recent", "SUCCESS", NOW - 3600),
        RunInfo("still-running", "STARTED", None),
        RunInfo("holds-latest", "SUCCESS", older),
    ]
    assert runs_to_delete(runs, {"holds-latest"}, NOW, POLICY) == ["old-ok", "older-failed"]


def test_superseded_events_keep_the_newest_per_subject() -> None:
    old = NOW - 3 * DAY_SECONDS
    events = [
        StoredEvent(1, ("raw_events", "2025-01-01"), old),
        StoredEvent(2, ("raw_events", "2025-01-01"), old),
        StoredEvent(3, ("raw_events", "2025-01-02"), old),  # the only one of its partition
        StoredEvent(4, ("raw_events", "2025-01-01"), NOW),
    ]
    assert superseded_events(events, NOW, POLICY) == [1, 2]


PARTITIONS = DailyPartitionsDefinition(start_date="2025-01-01", end_offset=1)


@asset(partitions_def=PARTITIONS)
def tiny() -> None:
    """A partitioned asset to produce runs with."""


@asset_check(asset=tiny)
def tiny_ok() -> AssetCheckResult:
    return AssetCheckResult(passed=True)


def test_prune_against_postgres_dagster_storage(new_database: Callable[[], str]) -> None:
    url = new_database()
    with instance_for_test(overrides={"storage": {"postgres": {"postgres_url": url}}}) as instance:
        runs = {}
        for key in ("2025-01-01", "2025-01-01", "2025-01-02"):
            result = materialize([tiny, tiny_ok], partition_key=key, instance=instance)
            runs.setdefault(key, []).append(result.run_id)
        for _ in range(3):
            instance.report_runless_asset_event(AssetMaterialization("raw_events", partition="2025-01-03"))
        superseded_run, latest_run = runs["2025-01-01"]

        deleted = prune_dagster_storage(instance, POLICY, now=time.time() + 3 * DAY_SECONDS)

        # check rows: Dagster keeps one per (check, partition) planned and one per evaluation (partition
        # NULL for an unpartitioned check): 2 planned rows of 2025-01-01 -> 1 goes, 3 evaluations -> 2 go
        assert deleted == {"runs": 1, "runless_asset_events": 2, "check_executions": 3}
        remaining = {r.run_id for r in instance.get_runs()}
        assert remaining == {latest_run, runs["2025-01-02"][0]}
        assert superseded_run not in remaining
        assert instance.get_materialized_partitions(AssetKey("tiny")) == {"2025-01-01", "2025-01-02"}
        assert instance.get_materialized_partitions(AssetKey("raw_events")) == {"2025-01-03"}
        assert prune_dagster_storage(instance, POLICY, now=time.time() + 3 * DAY_SECONDS) == {
            "runs": 0,
            "runless_asset_events": 0,
            "check_executions": 0,
        }


def test_runs_that_must_stay_do_not_stall_the_pass(new_database: Callable[[], str]) -> None:
    url = new_database()
    with instance_for_test(overrides={"storage": {"postgres": {"postgres_url": url}}}) as instance:
        keeps = materialize([tiny], partition_key="2025-01-05", instance=instance).run_id  # oldest, holds 01-05
        stale = [materialize([tiny], partition_key="2025-01-06", instance=instance).run_id for _ in range(3)]
        one_at_a_time = RetentionPolicy(successful_runs_days=2, batch_size=1)
        later = time.time() + 3 * DAY_SECONDS
        assert prune_dagster_storage(instance, one_at_a_time, now=later)["runs"] == 1
        assert prune_dagster_storage(instance, one_at_a_time, now=later)["runs"] == 1
        assert prune_dagster_storage(instance, one_at_a_time, now=later)["runs"] == 0
        assert {r.run_id for r in instance.get_runs()} == {keeps, stale[-1]}
