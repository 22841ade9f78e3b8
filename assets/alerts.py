"""The `alerts` asset and its hourly schedule: a thin shell over `shoppulse.alerts.evaluate.run_detector`.

Each run evaluates the complete hours not evaluated yet (net sales, orders, sessions, payment-failure
and quarantine shares), checks for a stalled pipeline, records new alerts in `analytics.alerts` and,
when `SHOPPULSE_ALERT_WEBHOOK_URL` is set, POSTs each new alert (docs/alerts.md).
"""

import datetime as dt

from dagster import (
    AssetExecutionContext,
    AssetKey,
    AssetSelection,
    DefaultScheduleStatus,
    MaterializeResult,
    MetadataValue,
    RunRequest,
    ScheduleEvaluationContext,
    asset,
    define_asset_job,
    in_process_executor,
    schedule,
)

from resources import PostgresResource
from shoppulse.alerts.evaluate import run_detector
from shoppulse.rollups import catalog
from shoppulse.rollups.runner import ensure_migrated
from shoppulse.settings import get_settings

ALERTS_CRON = "10 * * * *"
"""Ten minutes past every hour: the previous hour has ended, settled and been rolled up."""


@asset(
    name="alerts",
    deps=[AssetKey(catalog.SALES), AssetKey(catalog.USERS), AssetKey(catalog.INGEST_QUALITY)],
    group_name="alerts",
    kinds={"python", "postgres"},
    description="Anomalies on complete hours (net sales, orders and sessions against the same hour-of-week of "
    "previous weeks; payment-failure and quarantine shares; a stalled pipeline) in analytics.alerts.",
)
def alerts(context: AssetExecutionContext, warehouse: PostgresResource) -> MaterializeResult:
    ensure_migrated(warehouse.database_url)
    run = run_detector(warehouse.database_url, get_settings())
    for alert in run.new_alerts:
        context.log.warning("%s", alert.message)
    metadata = {
        "hours_evaluated": MetadataValue.int(len(run.hours_evaluated)),
        "new_alerts": MetadataValue.json([alert.id for alert in run.new_alerts]),
        "watermark": MetadataValue.text(run.watermark.isoformat() if run.watermark else "none"),
    }
    if run.delivery is not None:
        metadata["webhook_sent"] = MetadataValue.int(len(run.delivery.sent))
        metadata["webhook_failed"] = MetadataValue.json(run.delivery.failed)
    return MaterializeResult(metadata=metadata)


alerts_job = define_asset_job(
    "alerts_job",
    selection=AssetSelection.assets(alerts),
    executor_def=in_process_executor,
    description="Evaluate complete hours for anomalies and send new alerts.",
)


@schedule(
    name="alerts_hourly",
    job=alerts_job,
    cron_schedule=ALERTS_CRON,
    execution_timezone="UTC",
    default_status=DefaultScheduleStatus.RUNNING,
    description="Hourly: evaluate the hours completed since the last run and check the pipeline's freshness.",
)
def alerts_hourly(context: ScheduleEvaluationContext) -> RunRequest:
    scheduled = (context.scheduled_execution_time or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)
    return RunRequest(run_key=f"alerts:{scheduled.isoformat()}")
