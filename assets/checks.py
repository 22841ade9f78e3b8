"""Asset checks shown in the Dagster UI: the raw layer (per events partition) and the rollups.

Checks look at the days of the run they execute in (one partition, or a backfill's range); run on
their own (e.g. "Execute checks" in the UI, or the `rollup_checks` job) they look at the days of the
run's `shoppulse/check_days` tag, by default yesterday and today. Plain logic lives in
`shoppulse.rollups.checks`.
"""

import datetime as dt
from collections.abc import Iterator

from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetKey,
    MetadataValue,
    asset_check,
    multi_asset_check,
)

from assets.raw import RAW_EVENTS_KEY
from resources import LakeResource, PostgresResource
from shoppulse.rollups import catalog
from shoppulse.rollups.checks import (
    MAX_DUPLICATE_RATE,
    net_sales_mismatches,
    raw_partition_quality,
    recompute_and_compare_days,
    sample_days,
)
from shoppulse.settings import get_settings

RECOMPUTE_SAMPLE_DAYS = 2
"""Days of a run the recompute check recomputes (the newest, plus others sampled by run id)."""


CHECK_DAYS_TAG = "shoppulse/check_days"
"""Run tag naming the days (comma-separated ISO dates) a run without partitions checks."""


def check_days(context: AssetCheckExecutionContext) -> list[dt.date]:
    """The run's partition days; else the days of its CHECK_DAYS_TAG; else yesterday and today (UTC)."""
    if context.has_partition_key or context.has_partition_key_range:
        return [dt.date.fromisoformat(key) for key in context.partition_keys]
    tagged = context.run.tags.get(CHECK_DAYS_TAG)
    if tagged:
        return sorted({dt.date.fromisoformat(day.strip()) for day in tagged.split(",") if day.strip()})
    today = dt.datetime.now(dt.UTC).date()
    return [today - dt.timedelta(days=1), today]


RAW_CHECKS = {
    "schema_matches_contract": "Every file of the partition has exactly the lake columns and types of the contract.",
    "no_null_keys": "No row lacks an id, type, time, user, session or Kafka coordinate; every row is in its day.",
    "duplicate_rate": f"Re-delivered copies (same event_id) are at most {MAX_DUPLICATE_RATE:.0%} of the rows.",
}


@multi_asset_check(
    specs=[AssetCheckSpec(name, asset=RAW_EVENTS_KEY, description=text) for name, text in RAW_CHECKS.items()],
    name="raw_events_quality",
    can_subset=True,
)
def raw_events_quality(context: AssetCheckExecutionContext, lake: LakeResource) -> Iterator[AssetCheckResult]:
    reports = [raw_partition_quality(lake.path, day) for day in check_days(context)]
    selected = {key.name for key in context.selected_asset_check_keys}
    days = {"days": MetadataValue.json([r.day.isoformat() for r in reports])}
    if "schema_matches_contract" in selected:
        problems = [p for r in reports for p in r.schema_problems]
        yield AssetCheckResult(
            check_name="schema_matches_contract",
            passed=not problems,
            metadata={**days, "files": sum(r.files for r in reports), "problems": MetadataValue.json(problems[:50])},
        )
    if "no_null_keys" in selected:
        nulls = {c: sum(r.null_keys[c] for r in reports) for c in reports[0].null_keys} if reports else {}
        outside = sum(r.outside_partition for r in reports)
        yield AssetCheckResult(
            check_name="no_null_keys",
            passed=not any(nulls.values()) and not outside,
            metadata={**days, "null_keys": MetadataValue.json(nulls), "rows_outside_partition": outside},
        )
    if "duplicate_rate" in selected:
        rows = sum(r.rows for r in reports)
        copies = sum(r.copies for r in reports)
        rate = copies / rows if rows else 0.0
        yield AssetCheckResult(
            check_name="duplicate_rate",
            passed=rate <= MAX_DUPLICATE_RATE,
            severity=AssetCheckSeverity.WARN,
            metadata={
                **days,
                "rows": rows,
                "copies": copies,
                "duplicate_rate": MetadataValue.float(round(rate, 6)),
                "by_day": MetadataValue.json({r.day.isoformat(): round(r.duplicate_rate, 6) for r in reports}),
            },
        )


@asset_check(
    asset=catalog.PRODUCTS,
    additional_deps=[catalog.SALES],
    name="net_sales_add_up",
    description="Per day and currency, Σ net sales over products, over categories, and over the 15-minute "
    "sales rows equal the day's net sales in sales_daily.",
)
def net_sales_add_up(context: AssetCheckExecutionContext, warehouse: PostgresResource) -> AssetCheckResult:
    compared, mismatches = net_sales_mismatches(warehouse.database_url, check_days(context))
    return AssetCheckResult(
        passed=not mismatches,
        metadata={
            "days_compared": MetadataValue.json([d.isoformat() for d in compared]),
            "mismatches": MetadataValue.json(
                [
                    {
                        "day": m.day.isoformat(),
                        "currency": m.currency,
                        "table": m.table,
                        "table_net_sales": m.table_net_sales,
                        "sales_net_sales": m.sales_net_sales,
                    }
                    for m in mismatches[:50]
                ]
            ),
        },
    )


RECOMPUTE_CHECK = "matches_lake_recompute"
RECOMPUTE_DESCRIPTION = (
    "The serving rows of a sample of the run's partitions equal a fresh recompute from the lake. A partition "
    "whose lake snapshot changed since it was written is reported as not comparable (it is being rerun)."
)


def _recompute_results(
    context: AssetCheckExecutionContext, assets: list[str], lake: LakeResource, warehouse: PostgresResource
) -> list[AssetCheckResult]:
    days = sample_days(check_days(context), RECOMPUTE_SAMPLE_DAYS, context.run.run_id)
    results = recompute_and_compare_days(
        lake.path, warehouse.database_url, assets, days, get_settings().reporting_currency
    )
    checks = []
    for name in assets:
        mine = [r for r in results if r.asset == name]
        failed = [r for r in mine if r.comparable and not r.matches]
        checks.append(
            AssetCheckResult(
                asset_key=AssetKey(name),
                check_name=RECOMPUTE_CHECK,
                passed=not failed,
                metadata={
                    "days_compared": MetadataValue.json([r.day.isoformat() for r in mine if r.comparable]),
                    "days_not_comparable": MetadataValue.json([r.day.isoformat() for r in mine if not r.comparable]),
                    "days_with_sessions_across_users": MetadataValue.json(
                        {r.day.isoformat(): r.sessions_across_users for r in mine if r.sessions_across_users}
                    ),
                    "differences": MetadataValue.json(
                        {r.day.isoformat(): r.differing_tables for r in mine if r.differing_tables}
                    ),
                },
            )
        )
    return checks


@multi_asset_check(
    specs=[
        AssetCheckSpec(RECOMPUTE_CHECK, asset=name, description=RECOMPUTE_DESCRIPTION) for name in catalog.EVENT_ROLLUPS
    ],
    name="event_rollups_match_lake",
    can_subset=True,
)
def event_rollups_match_lake(
    context: AssetCheckExecutionContext, lake: LakeResource, warehouse: PostgresResource
) -> Iterator[AssetCheckResult]:
    selected = [k.asset_key.to_user_string() for k in context.selected_asset_check_keys]
    yield from _recompute_results(context, [a for a in catalog.EVENT_ROLLUPS if a in selected], lake, warehouse)


@asset_check(asset=catalog.FX_RATES, name=RECOMPUTE_CHECK, description=RECOMPUTE_DESCRIPTION)
def fx_rates_match_source(
    context: AssetCheckExecutionContext, lake: LakeResource, warehouse: PostgresResource
) -> AssetCheckResult:
    return _recompute_results(context, [catalog.FX_RATES], lake, warehouse)[0]


@asset_check(asset=catalog.INGEST_QUALITY, name=RECOMPUTE_CHECK, description=RECOMPUTE_DESCRIPTION)
def ingest_quality_matches_lake(
    context: AssetCheckExecutionContext, lake: LakeResource, warehouse: PostgresResource
) -> AssetCheckResult:
    return _recompute_results(context, [catalog.INGEST_QUALITY], lake, warehouse)[0]


RAW_CHECKS_DEFS = [raw_events_quality]
ROLLUP_CHECKS = [net_sales_add_up, event_rollups_match_lake, fx_rates_match_source, ingest_quality_matches_lake]
