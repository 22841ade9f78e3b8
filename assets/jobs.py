"""Jobs over the rollup assets (what automation, backfills and the check schedule launch)."""

import datetime as dt
from collections.abc import Iterable

from dagster import (
    AssetCheckKey,
    AssetKey,
    AssetSelection,
    DefaultScheduleStatus,
    RunRequest,
    ScheduleEvaluationContext,
    define_asset_job,
    in_process_executor,
    schedule,
)

from assets.checks import CHECK_DAYS_TAG
from assets.raw import RAW_EVENTS_KEY
from assets.rollups import ROLLUP_ASSETS
from shoppulse.rollups import catalog

ROLLUPS_JOB_NAME = "rollups"
ROLLUP_RUN_RETRIES = {"dagster/max_retries": "3", "dagster/retry_strategy": "ALL_STEPS"}
"""A rollups run whose worker dies (kill -9, OOM) or that fails is re-executed by Dagster's run-retry
daemon (`run_retries` in dagster.yaml), up to 3 times; every step again (runs are idempotent)."""

rollups_job = define_asset_job(
    ROLLUPS_JOB_NAME,
    selection=AssetSelection.assets(*ROLLUP_ASSETS) | AssetSelection.checks_for_assets(RAW_EVENTS_KEY),
    executor_def=in_process_executor,
    tags=ROLLUP_RUN_RETRIES,
    description=(
        "Every rollup of one UTC day (or, with a partition range, of many days in one run), with their "
        "checks. In-process: the steps share one process, so a run costs one process launch."
    ),
)
"""Run with a subset (`asset_selection`) and a partition key to refresh just what a lake change reached."""


def live_check_keys(assets: Iterable[str]) -> list[AssetCheckKey]:
    """Checks cheap enough for a run every few seconds, for the selected rollups: only `net_sales_add_up`
    (a few SQL sums). The recompute check repeats the whole computation, so live runs leave it to the
    hourly `rollup_checks` schedule and to backfills: pass this as RunRequest(asset_check_keys=...)."""
    selected = set(assets)
    if {catalog.PRODUCTS, catalog.SALES} & selected:
        return [AssetCheckKey(AssetKey(catalog.PRODUCTS), "net_sales_add_up")]
    return []


rollup_checks_job = define_asset_job(
    "rollup_checks",
    selection=AssetSelection.checks_for_assets(RAW_EVENTS_KEY, *ROLLUP_ASSETS),
    executor_def=in_process_executor,
    description="Every raw-layer and rollup check, without materializing anything, on the days of the run's "
    "`shoppulse/check_days` tag (default: yesterday and today, UTC).",
)


@schedule(
    name="rollup_checks_hourly",
    job=rollup_checks_job,
    cron_schedule="25 * * * *",
    execution_timezone="UTC",
    default_status=DefaultScheduleStatus.RUNNING,
    description="Hourly: every check (raw layer, sums, recompute) on yesterday and today, the partitions that "
    "still change; live runs only run the cheap sums.",
)
def rollup_checks_hourly(context: ScheduleEvaluationContext) -> RunRequest:
    scheduled = (context.scheduled_execution_time or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)
    days = [(scheduled - dt.timedelta(days=back)).date().isoformat() for back in (1, 0)]
    return RunRequest(run_key=f"rollup_checks:{scheduled.isoformat()}", tags={CHECK_DAYS_TAG: ",".join(days)})


TODAY_CHECK_KEYS = [AssetCheckKey(AssetKey(asset), "matches_lake_recompute") for asset in catalog.EVENT_ROLLUPS]


@schedule(
    name="incremental_rollups_check",
    job=rollup_checks_job,
    cron_schedule="*/10 * * * *",
    execution_timezone="UTC",
    default_status=DefaultScheduleStatus.RUNNING,
    description="Every 10 minutes: today's event rollups (folded incrementally by live runs) against a fresh "
    "full recompute of the day at the lake version they reflect; any difference fails the check.",
)
def incremental_rollups_check(context: ScheduleEvaluationContext) -> RunRequest:
    scheduled = (context.scheduled_execution_time or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)
    return RunRequest(
        run_key=f"incremental_rollups_check:{scheduled.isoformat()}",
        tags={CHECK_DAYS_TAG: scheduled.date().isoformat()},
        asset_check_keys=TODAY_CHECK_KEYS,
    )
