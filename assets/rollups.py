"""Rollup assets: daily-partitioned (UTC, today included) shells over `shoppulse.rollups`.

- `fx_rates`: the daily FX table (synthetic, see shoppulse/rollups/fx.py);
- `event_rollups`: one multi-asset for sales, products, users, funnel and customers, so a run reads
  and deduplicates each day of the lake once for all of them; subsettable, so automation can rerun
  just `users` for the days a late event reaches through the MAU window;
- `ingest_quality`: quarantined and beyond-horizon messages per received day.

Each partition is replaced in PostgreSQL in one transaction with its ledger row (`analytics.
materializations`). A backfill over a date range runs as ONE run per asset group
(`BackfillPolicy.single_run()`), which processes the days in order, reusing each day's read.
"""

import datetime as dt
from collections.abc import Iterator, Sequence

import psycopg
from dagster import (
    AssetExecutionContext,
    AssetKey,
    AssetSpec,
    BackfillPolicy,
    MaterializeResult,
    MetadataValue,
    asset,
    multi_asset,
)

from assets.partitions import daily_partitions
from assets.raw import RAW_EVENTS_KEY
from resources import LakeResource, PostgresResource
from shoppulse.observability.metrics import record_fold, rollup_run
from shoppulse.rollups import catalog
from shoppulse.rollups.incremental.fold import FoldOutcome, state_bytes
from shoppulse.rollups.runner import (
    RunSummary,
    ensure_migrated,
    fold_event_rollups,
    fx_write,
    quality_write,
    run_event_rollups,
    run_partition_writes,
)
from shoppulse.rollups.source import LakeState
from shoppulse.settings import get_settings

ROLLUP_GROUP = "rollups"
ROLLUP_BACKFILL_POLICY = BackfillPolicy.single_run()
"""A backfill over N days is one run per asset group (not N), each reading the days in order."""

DESCRIPTIONS = {
    catalog.SALES: "Orders, units, gross sales, discounts, returns, net sales, shipping, taxes and total sales "
    "per native currency at 15 min (with country/channel/device), hourly and daily grains, plus hourly and "
    "daily totals in the reporting currency. Returns are booked on the refund/cancellation day.",
    catalog.PRODUCTS: "Per product (hourly, daily) and per category (15 min with country/channel/device, daily): "
    "orders, units, gross sales, discounts, returns, net sales per native currency.",
    catalog.USERS: "Active users per minute over sliding 1/5/15/30/60-minute windows; DAU, WAU, MAU, sessions "
    "and views per day; per hour, sessions, events and payments (traffic_hourly). WAU/MAU read the 30 days ending "
    "with the partition.",
    catalog.FUNNEL: "Sessions with a product view, a cart, a checkout and a purchase, per country/channel/device "
    "of the session's first event of the day.",
    catalog.CUSTOMERS: "Customers and orders per day, first-time vs returning (customer_order_number).",
}


def partition_days(context: AssetExecutionContext) -> list[dt.date]:
    """The UTC days this run materializes (one, or a backfill's whole range)."""
    return [dt.date.fromisoformat(key) for key in context.partition_keys]


def summary_metadata(summary: RunSummary, asset_name: str) -> dict[str, MetadataValue]:
    outcomes = summary.for_asset(asset_name)
    skipped = [o.day.isoformat() for o in outcomes if not o.written]
    return {
        "partitions": MetadataValue.int(len(outcomes)),
        "rows_written": MetadataValue.int(sum(o.row_count for o in outcomes if o.written)),
        "rows_changed": MetadataValue.int(sum(o.rows_changed for o in outcomes)),
        "rows_by_partition": MetadataValue.json({o.day.isoformat(): o.row_count for o in outcomes}),
        "lake_version": MetadataValue.int(max((o.lake_version for o in outcomes), default=0)),
        "skipped_as_superseded": MetadataValue.json(skipped),
        "run_seconds": MetadataValue.float(round(summary.seconds, 3)),
    }


@asset(
    name=catalog.FX_RATES,
    partitions_def=daily_partitions,
    backfill_policy=ROLLUP_BACKFILL_POLICY,
    group_name=ROLLUP_GROUP,
    kinds={"python", "postgres"},
    description="Daily FX rates (units per USD) for converting sales into the reporting currency. "
    "SYNTHETIC: deterministic base rates with a small daily drift (no FX feed is reachable here).",
)
def fx_rates(context: AssetExecutionContext, warehouse: PostgresResource) -> MaterializeResult:
    with rollup_run(catalog.FX_RATES) as record:
        ensure_migrated(warehouse.database_url)
        summary = run_partition_writes(
            warehouse.database_url, partition_days(context), lambda day: fx_write(day, context.run.run_id)
        )
        record(summary.outcomes)
    return MaterializeResult(metadata=summary_metadata(summary, catalog.FX_RATES))


EVENT_ROLLUP_SPECS: Sequence[AssetSpec] = [
    AssetSpec(
        key=name,
        deps=[RAW_EVENTS_KEY, catalog.FX_RATES] if name == catalog.SALES else [RAW_EVENTS_KEY],
        partitions_def=daily_partitions,
        group_name=ROLLUP_GROUP,
        kinds={"polars", "postgres"},
        description=DESCRIPTIONS[name],
        metadata={"serving_tables": MetadataValue.json([t.name for t in catalog.TABLES[name]])},
    )
    for name in catalog.EVENT_ROLLUPS
]


LIVE_TRIGGERS = ("kafka_drain", "rollup_reconciler")
"""Run triggers (`shoppulse/trigger` tag) of live runs: they fold; backfills and manual reruns recompute."""


def folds_incrementally(context: AssetExecutionContext, days: Sequence[dt.date]) -> bool:
    """A live run of one day within the lateness horizon folds only the new events (incremental_rollups on);
    every other run (backfills, manual reruns, days past the horizon) recomputes from the lake."""
    settings = get_settings()
    if not settings.incremental_rollups or len(days) != 1:
        return False
    if context.run.tags.get("shoppulse/trigger") not in LIVE_TRIGGERS:
        return False
    horizon = dt.timedelta(hours=settings.lateness_horizon_hours) + dt.timedelta(days=1)
    return days[0] >= (dt.datetime.now(dt.UTC) - horizon).date()


def fold_metadata(outcome: FoldOutcome, state_size: int) -> dict[str, MetadataValue]:
    return {
        "fold_mode": MetadataValue.text("rebuilt from the whole day" if outcome.rebuilt else "incremental"),
        "events_folded": MetadataValue.int(outcome.events_folded),
        "events_read": MetadataValue.int(outcome.events_in),
        "buckets_touched": MetadataValue.int(outcome.buckets_touched),
        "fold_state_bytes": MetadataValue.int(state_size),
        "fold_seconds": MetadataValue.float(round(outcome.seconds, 3)),
        "fold_steps": MetadataValue.int(outcome.steps),
    }


def state_bytes_of(database_url: str) -> int:
    with psycopg.connect(database_url, autocommit=True) as conn:
        return state_bytes(conn)


@multi_asset(
    name="event_rollups",
    specs=EVENT_ROLLUP_SPECS,
    can_subset=True,
    backfill_policy=ROLLUP_BACKFILL_POLICY,
)
def event_rollups(
    context: AssetExecutionContext, lake: LakeResource, warehouse: PostgresResource
) -> Iterator[MaterializeResult]:
    selected = [name for name in catalog.EVENT_ROLLUPS if AssetKey(name) in context.selected_asset_keys]
    days = partition_days(context)
    with rollup_run("event_rollups") as record:
        ensure_migrated(warehouse.database_url)
        if folds_incrementally(context, days):
            summary, outcome = fold_event_rollups(
                lake.path,
                warehouse.database_url,
                days[0],
                selected,
                get_settings().reporting_currency,
                run_id=context.run.run_id,
            )
            record(summary.outcomes)
            record_fold(outcome)
            state_size = state_bytes_of(warehouse.database_url)
            for name in selected:
                yield MaterializeResult(
                    asset_key=name, metadata={**summary_metadata(summary, name), **fold_metadata(outcome, state_size)}
                )
            return
        summary = run_event_rollups(
            lake.path,
            warehouse.database_url,
            days,
            selected,
            get_settings().reporting_currency,
            run_id=context.run.run_id,
        )
        record(summary.outcomes)
    for name in selected:
        yield MaterializeResult(asset_key=name, metadata=summary_metadata(summary, name))


@asset(
    name=catalog.INGEST_QUALITY,
    deps=[RAW_EVENTS_KEY],
    partitions_def=daily_partitions,
    backfill_policy=ROLLUP_BACKFILL_POLICY,
    group_name=ROLLUP_GROUP,
    kinds={"duckdb", "polars", "postgres"},
    description="Quarantined messages by reason (and per hour) and beyond-horizon events by original day and "
    "type, per UTC day the broker received them (partition = received date).",
)
def ingest_quality(
    context: AssetExecutionContext, lake: LakeResource, warehouse: PostgresResource
) -> MaterializeResult:
    with rollup_run(catalog.INGEST_QUALITY) as record:
        ensure_migrated(warehouse.database_url)
        version = LakeState.read(lake.path).version  # every day of the run reads this one table version
        summary = run_partition_writes(
            warehouse.database_url,
            partition_days(context),
            lambda day: quality_write(lake.path, day, context.run.run_id, version=version),
        )
        record(summary.outcomes)
    return MaterializeResult(metadata=summary_metadata(summary, catalog.INGEST_QUALITY))


ROLLUP_ASSETS = [fx_rates, event_rollups, ingest_quality]
