"""The one Dagster `Definitions` entry for ShopPulse (found via `[tool.dagster]` in pyproject.toml)."""

from dagster import Definitions, EnvVar, in_process_executor

from assets.alerts import alerts, alerts_hourly, alerts_job
from assets.checks import RAW_CHECKS_DEFS, ROLLUP_CHECKS
from assets.jobs import incremental_rollups_check, rollup_checks_hourly, rollup_checks_job, rollups_job
from assets.raw import raw_events
from assets.retention import dagster_storage_retention, dagster_storage_retention_schedule
from assets.rollups import ROLLUP_ASSETS
from pipelines.ingest import drain_sensors
from pipelines.reconcile import rollup_reconciler
from resources import KafkaResource, LakeResource, PostgresResource

defs = Definitions(
    assets=[raw_events, *ROLLUP_ASSETS, alerts],
    asset_checks=[*RAW_CHECKS_DEFS, *ROLLUP_CHECKS],
    jobs=[rollups_job, rollup_checks_job, dagster_storage_retention, alerts_job],
    schedules=[dagster_storage_retention_schedule, rollup_checks_hourly, incremental_rollups_check, alerts_hourly],
    sensors=[*drain_sensors(), rollup_reconciler],
    # Every run (UI materializations and backfills included) executes its steps in one process.
    executor=in_process_executor,
    resources={
        "kafka": KafkaResource(
            bootstrap_servers=EnvVar("KAFKA_BOOTSTRAP_SERVERS"), events_topic=EnvVar("SHOPPULSE_EVENTS_TOPIC")
        ),
        "lake": LakeResource(lake_dir=EnvVar("SHOPPULSE_LAKE_URI")),
        "warehouse": PostgresResource(database_url=EnvVar("DATABASE_URL")),
    },
)
