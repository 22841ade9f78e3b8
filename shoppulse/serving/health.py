"""Freshness of every asset (ledger) and of ingestion (Kafka consumer lag), for /health/freshness."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from psycopg.rows import dict_row

from shoppulse.serving.ledger import ASSETS
from shoppulse.serving.results import Meta, QueryContext, QueryResult, Scope


def _age(now: datetime, instant: datetime | None) -> float | None:
    return None if instant is None else round((now - instant).total_seconds(), 3)


async def freshness(ctx: QueryContext) -> QueryResult:
    """Per asset: newest partition, last materialization, watermark and their ages; per partition lag."""
    async with ctx.conn.cursor(row_factory=dict_row) as cursor:
        await cursor.execute(
            "SELECT asset, max(partition_date) AS latest_partition, max(materialized_at) AS last_materialized_at,"
            " max(max_event_ts) AS watermark, count(*) AS partitions"
            " FROM analytics.materializations GROUP BY asset"
        )
        ledger = {row["asset"]: row for row in await cursor.fetchall()}
        await cursor.execute(
            "SELECT topic, kafka_partition, next_offset, high_watermark, lag, updated_at"
            " FROM analytics.ingest_progress ORDER BY topic, kafka_partition"
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
    updated = max((row["updated_at"] for row in progress), default=None)
    data = {
        "now": ctx.now,
        "assets": assets,
        "ingest": {
            "total_lag": sum(row["lag"] for row in progress),
            "updated_at": updated,
            "age_seconds": _age(ctx.now, updated),
            "partitions": [
                {
                    "topic": row["topic"],
                    "partition": row["kafka_partition"],
                    "next_offset": row["next_offset"],
                    "high_watermark": row["high_watermark"],
                    "lag": row["lag"],
                    "updated_at": row["updated_at"],
                }
                for row in progress
            ],
        },
    }
    data["catching_up"] = catching_up
    materialized = [row["last_materialized_at"] for row in ledger.values()]
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
