"""The one Dagster `Definitions` entry for ShopPulse (found via `[tool.dagster]` in pyproject.toml)."""

from dagster import Definitions, EnvVar, in_process_executor

from assets.checks import RAW_CHECKS_DEFS, ROLLUP_CHECKS
from assets.jobs import incremental_rollups_check, rollup_checks_hourly, rollup_checks_job, rollups_job
from assets.raw import raw_events
from assets.retention import dagster_storage_retention, dagster_storage_retention_schedule
from assets.rollups import ROLLUP_ASSETS
from pipelines.ingest import kafka_drain
from pipelines.reconcile import rollup_reconciler
from resources import KafkaResource, LakeResource, PostgresResource

defs = Definitions(
    assets=[raw_events, *ROLLUP_ASSETS],
    asset_checks=[*RAW_CHECKS_DEFS, *ROLLUP_CHECKS],
    jobs=[rollups_job, rollup_checks_job, dagster_storage_retention],
    schedules=[dagster_storage_retention_schedule, rollup_checks_hourly, incremental_rollups_check],
    sensors=[kafka_drain, rollup_reconciler],
    # Every run (UI materializations and backfills included) executes its steps in one process.
    executor=in_process_executor,
    resources={
        "kafka": KafkaResource(
            bootstrap_servers=EnvVar("KAFKA_BOOTSTRAP_SERVERS"), events_topic=EnvVar("SHOPPULSE_EVENTS_TOPIC")
        ),
        "lake": LakeResource(lake_dir=EnvVar("SHOPPULSE_LAKE_DIR")),
        "warehouse": PostgresResource(database_url=EnvVar("DATABASE_URL")),
    },
)
