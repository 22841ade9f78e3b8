"""Freshness of every asset (ledger) and of ingestion (Kafka lag measured at the broker), for
/health/freshness, and the readiness verdict of /health/ready."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

from psycopg.rows import dict_row

from shoppulse.serving.ledger import ASSETS
from shoppulse.serving.readiness import HealthMonitor, ingest_section
from shoppulse.serving.results import Meta, QueryContext, QueryResult, Scope


def _age(now: datetime, instant: datetime | None) -> float | None:
    return None if instant is None else round((now - instant).total_seconds(), 3)


async def last_materialized_at(ctx: QueryContext) -> datetime | None:
    async with ctx.conn.cursor() as cursor:
        await cursor.execute("SELECT max(materialized_at) FROM analytics.materializations")
        row = await cursor.fetchone()
    return row[0] if row else None


async def readiness(ctx: QueryContext, monitor: HealthMonitor) -> list[str]:
    """Reasons the service is not ready (empty = ready): ingestion or rollups stalled, broker unreachable."""
    health = await asyncio.to_thread(monitor.measure)
    return monitor.reasons(health, monitor.rollup_backlog_seconds(await last_materialized_at(ctx)))


async def freshness(ctx: QueryContext, monitor: HealthMonitor) -> QueryResult:
    """Per asset: newest partition, last materialization, watermark and their ages; per partition lag
    measured at the broker (never the drain's own last word), stalls and the readiness verdict."""
    health = await asyncio.to_thread(monitor.measure)
    async with ctx.conn.cursor(row_factory=dict_row) as cursor:
        await cursor.execute(
            "SELECT asset, max(partition_date) AS latest_partition, max(materialized_at) AS last_materialized_at,"
            " max(max_event_ts) AS watermark, count(*) AS partitions"
            " FROM analytics.materializations GROUP BY asset"
        )
        ledger = {row["asset"]: row for row in await cursor.fetchall()}
        await cursor.execute(
            "SELECT updated_at FROM analytics.ingest_progress WHERE topic = %s",
            (monitor.settings.events_topic,),
        )
        progress = await cursor.fetchall()
        catching_up = await _catching_up(cursor)
    assets: list[dict[str, Any]] = []
    for asset in sorted(set(ASSETS) | set(ledger)):
        row = ledger.get(asset)
        assets.append(
            {
                "asset": asset,
                "latest_partition": row["latest_partition"] if row else None,
                "last_materialized_at": row["last_materialized_at"] if row else None,
                "watermark": row["watermark"] if row else None,
                "partitions": row["partitions"] if row else 0,
                "materialization_age_seconds": _age(ctx.now, row["last_materialized_at"]) if row else None,
                "watermark_age_seconds": _age(ctx.now, row["watermark"]) if row else None,
            }
        )
    materialized = [row["last_materialized_at"] for row in ledger.values()]
    rollup_backlog = monitor.rollup_backlog_seconds(max(materialized, default=None))
    reasons = monitor.reasons(health, rollup_backlog)
    data = {
        "now": ctx.now,
        "assets": assets,
        "ingest": ingest_section(health, progress, ctx.now),
        "rollups": {
            "stalled": rollup_backlog > monitor.settings.health_rollup_stall_seconds,
            "backlog_seconds": rollup_backlog,
        },
        "ready": not reasons,
        "reasons": reasons,
        "drain_watchdog": monitor.watchdog_state(),
    }
    data["catching_up"] = catching_up
    watermarks = [asset["watermark"] for asset in assets if asset["watermark"] is not None]
    meta = Meta(
        as_of=max(materialized, default=None),
        watermark=min(watermarks, default=None),
        complete=all(asset["last_materialized_at"] is not None for asset in assets),
        tz="UTC",
    )
    return QueryResult(data, meta, tuple(Scope(asset) for asset in ASSETS))


async def _catching_up(cursor: Any) -> list[dict[str, Any]]:
    """Partitions whose ledger lags the lake, as the rollup reconciler last saw them (empty before its
    migration or first evaluation)."""
    await cursor.execute("SELECT to_regclass('analytics.rollup_reconcile') IS NOT NULL AS present")
    row = await cursor.fetchone()
    if not row or not row["present"]:
        return []
    await cursor.execute(
        "SELECT asset, partition_date AS partition, ledger_version, lake_version, attempts, in_flight,"
        " lagging_since, next_attempt_at, attempts >= 2 AS backing_off"
        " FROM analytics.rollup_reconcile ORDER BY partition_date, asset"
    )
    return list(await cursor.fetchall())
