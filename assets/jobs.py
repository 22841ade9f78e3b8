"""Jobs over the rollup assets (what automation and backfills launch)."""

from dagster import AssetSelection, define_asset_job, in_process_executor

from assets.raw import RAW_EVENTS_KEY
from assets.rollups import ROLLUP_ASSETS

ROLLUPS_JOB_NAME = "rollups"

rollups_job = define_asset_job(
    ROLLUPS_JOB_NAME,
    selection=AssetSelection.assets(*ROLLUP_ASSETS) | AssetSelection.checks_for_assets(RAW_EVENTS_KEY),
    executor_def=in_process_executor,
    description=(
        "Every rollup of one UTC day (or, with a partition range, of many days in one run), with their "
        "checks. In-process: the steps share one process, so a run costs one process launch."
    ),
)
"""Run with a subset (`asset_selection`) and a partition key to refresh just what a lake change reached."""
