"""Incremental folding through Dagster: a live run of today folds and says so in its metadata; a manual
run (or a backfill) recomputes; the 10-minute check compares today's rows with a fresh recompute."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import psycopg
from dagster import AssetKey, DagsterEventType, DagsterInstance, build_schedule_context, instance_for_test

from assets.checks import CHECK_DAYS_TAG
from assets.jobs import ROLLUPS_JOB_NAME, TODAY_CHECK_KEYS, incremental_rollups_check, rollup_checks_job
from shoppulse.lake.writer import append_events
from tests.rollups import scenario
from tests.rollups.conftest import write_fx
from tests.rollups.test_dagster import check_results, definitions

LIVE = {"shoppulse/trigger": "kafka_drain"}


def metadata(instance: DagsterInstance, run_id: str, asset: str) -> dict:
    records = instance.get_records_for_run(run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION).records
    for record in records:
        materialization = record.event_log_entry.dagster_event.event_specific_data.materialization
        if materialization.asset_key == AssetKey(asset):
            return {key: value.value for key, value in materialization.metadata.items()}
    raise AssertionError(f"no materialization of {asset}")


def test_live_runs_fold_and_manual_runs_recompute(tmp_path: Path, database: str) -> None:
    today = dt.datetime.now(dt.UTC).date()
    lake = tmp_path / "lake"
    write_fx(database, [today])
    at = scenario.at
    append_events(lake, scenario.frame([scenario.event("page_view", at(today, "00:01:00"), "u1", "s1")]))
    defs = definitions(lake, database)
    job = defs.resolve_job_def(ROLLUPS_JOB_NAME)
    with instance_for_test() as instance:
        first = job.execute_in_process(instance=instance, partition_key=today.isoformat(), tags=LIVE)
        assert metadata(instance, first.run_id, "users")["fold_mode"] == "rebuilt from the whole day"
        lines = [scenario.line("p1", "shoes", 2, 1500)]
        order = scenario.order("order_placed", at(today, "00:02:00"), "u1", "s1", "o1", "USD", lines, 100, 50, 1)
        append_events(lake, scenario.frame([order, scenario.event("page_view", at(today, "00:03:00"), "u2", "s2")]))
        second = job.execute_in_process(instance=instance, partition_key=today.isoformat(), tags=LIVE)
        folded = metadata(instance, second.run_id, "sales")
        assert (folded["fold_mode"], folded["events_folded"]) == ("incremental", 2)
        assert folded["buckets_touched"] > 0 and folded["fold_state_bytes"] > 0 and folded["fold_seconds"] >= 0
        manual = job.execute_in_process(instance=instance, partition_key=today.isoformat())
        assert "fold_mode" not in metadata(instance, manual.run_id, "sales")  # recomputed: the definition

        now = dt.datetime.now(dt.UTC)
        request = incremental_rollups_check(build_schedule_context(instance=instance, scheduled_execution_time=now))
        assert request.tags[CHECK_DAYS_TAG] == today.isoformat()
        checks_job = defs.resolve_job_def(rollup_checks_job.name)
        keys = set(request.asset_check_keys or [])
        assert keys == set(TODAY_CHECK_KEYS)
        clean = checks_job.execute_in_process(instance=instance, tags=request.tags)
        passed = check_results(instance, clean.run_id)
        assert {passed[(k.asset_key.to_user_string(), k.name)] for k in keys} == {True}
        with psycopg.connect(database, autocommit=True) as conn:
            conn.execute("UPDATE analytics.funnel_daily SET cart_sessions = cart_sessions + 1")
        failed = checks_job.execute_in_process(instance=instance, tags=request.tags)
        results = check_results(instance, failed.run_id)
        assert results[("funnel", "matches_lake_recompute")] is False
        assert results[("sales", "matches_lake_recompute")] is True
