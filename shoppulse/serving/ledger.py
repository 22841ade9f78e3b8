"""Freshness of an answer from the materialization ledger (`analytics.materializations`).

- `as_of`: the newest `materialized_at` among the partitions an answer read;
- `watermark`: the newest `max_event_ts` among them (the newest event time included);
- `complete`: every UTC partition the answer spans is materialized for every asset it reads, and
  closed: its end plus the lateness horizon has passed, so no more events can land in it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from psycopg import AsyncConnection

from shoppulse.serving.results import Scope
from shoppulse.serving.timeframe import utc_day_start

ASSETS = ("fx_rates", "sales", "products", "users", "funnel", "customers", "ingest_quality")
"""Asset names of the ledger, as the rollups write them."""


@dataclass(frozen=True)
class Freshness:
    as_of: datetime | None
    watermark: datetime | None
    complete: bool
    changes_at: datetime | None
    """When `complete` flips by the passage of time alone (a partition closing), if it will."""


def closes_at(partition: date, horizon: timedelta) -> datetime:
    """When a UTC partition stops accepting late events."""
    return utc_day_start(partition + timedelta(days=1)) + horizon


async def read_freshness(
    conn: AsyncConnection, scopes: Sequence[Scope], *, now: datetime, horizon: timedelta
) -> Freshness:
    """Freshness over the partitions of `scopes` (each with explicit dates)."""
    dated = [scope for scope in scopes if scope.first is not None and scope.last is not None]
    if not dated:
        return Freshness(None, None, False, None)
    first = min(scope.first for scope in dated if scope.first is not None)
    last = max(scope.last for scope in dated if scope.last is not None)
    cursor = await conn.execute(
        "SELECT asset, partition_date, max_event_ts, materialized_at FROM analytics.materializations"
        " WHERE asset = ANY(%s) AND partition_date BETWEEN %s AND %s",
        (sorted({scope.asset for scope in dated}), first, last),
    )
    ledger = {
        (asset, day): (watermark, materialized) for asset, day, watermark, materialized in await cursor.fetchall()
    }
    as_of: datetime | None = None
    watermark: datetime | None = None
    materialized_all = True
    pending_closes: list[datetime] = []
    for scope in dated:
        day = scope.first
        while day is not None and scope.last is not None and day <= scope.last:
            entry = ledger.get((scope.asset, day))
            if entry is None:
                materialized_all = False
            else:
                event_ts, materialized_at = entry
                as_of = materialized_at if as_of is None else max(as_of, materialized_at)
                if event_ts is not None:
                    watermark = event_ts if watermark is None else max(watermark, event_ts)
            closing = closes_at(day, horizon)
            if closing > now:
                pending_closes.append(closing)
            day += timedelta(days=1)
    complete = materialized_all and not pending_closes
    changes_at = min(pending_closes) if materialized_all and pending_closes else None
    return Freshness(as_of, watermark, complete, changes_at)
