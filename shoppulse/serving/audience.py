"""Users, funnel, carts and customers: distinct-count rollups kept per UTC day (or per minute).

Distinct counts cannot be re-bucketed into another time zone, so these answer in UTC days
(`meta.tz` = "UTC"). Additive counts (sessions, customers, ...) of a day without a row are 0;
rolling distinct counts (DAU/WAU/MAU) of such a day are null: they are not additive.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, datetime, timedelta
from typing import Any

from psycopg import sql
from psycopg.rows import dict_row

from shoppulse.serving.ledger import read_freshness
from shoppulse.serving.metrics import (
    ACTIVE_USER_WINDOWS,
    CUSTOMER_MEASURES,
    FUNNEL_STAGES,
    cart_abandonment_rate,
    conversion_rate,
    ratio,
    returning_customer_rate,
)
from shoppulse.serving.results import Meta, QueryContext, QueryResult, Scope
from shoppulse.serving.timeframe import Window

FUNNEL_FILTERS = ("country", "channel", "device")
MAX_ACTIVE_MINUTES = 1440

LATEST_COMPLETE_MINUTE = """
    WITH ledger AS (SELECT max(max_event_ts) AS watermark FROM analytics.materializations WHERE asset = 'users')
    SELECT a.event_date, a.minute_start, a.users_1m, a.users_5m, a.users_15m, a.users_30m, a.users_60m
    FROM analytics.active_users_minute a, ledger
    WHERE ledger.watermark IS NULL OR a.minute_start + interval '1 minute' <= ledger.watermark
    ORDER BY a.event_date DESC, a.minute_start DESC
    LIMIT 1
"""
"""The newest minute the users rollup has seen the end of (its watermark is past the minute's end)."""


async def _fetch(ctx: QueryContext, query: sql.Composable | str, params: Mapping[str, Any]) -> list[dict[str, Any]]:
    async with ctx.conn.cursor(row_factory=dict_row) as cursor:
        await cursor.execute(query, params)
        return await cursor.fetchall()


async def _result(ctx: QueryContext, data: Any, scopes: Sequence[Scope], extra: Sequence[Scope] = ()) -> QueryResult:
    freshness = await read_freshness(ctx.conn, scopes, now=ctx.now, horizon=ctx.lateness_horizon)
    meta = Meta(as_of=freshness.as_of, watermark=freshness.watermark, complete=freshness.complete, tz="UTC")
    return QueryResult(data, meta, (*scopes, *extra), freshness.changes_at)


def _days(window: Window) -> list[date]:
    return [window.first + timedelta(days=offset) for offset in range(window.days)]


async def active_users_now(ctx: QueryContext, window_minutes: int) -> QueryResult:
    """Distinct users in the sliding windows ending with the newest minute in `active_users_minute`."""
    column = ACTIVE_USER_WINDOWS[window_minutes]
    rows = await _fetch(ctx, LATEST_COMPLETE_MINUTE, {})
    if not rows:
        data = {"minute_start": None, "window_minutes": window_minutes, "active_users": None, "windows": None}
        return await _result(ctx, data, (), (Scope("users"),))
    row = rows[0]
    data = {
        "minute_start": row["minute_start"],
        "window_minutes": window_minutes,
        "active_users": row[column],
        "windows": {f"{minutes}m": row[name] for minutes, name in ACTIVE_USER_WINDOWS.items()},
    }
    return await _result(ctx, data, (Scope("users", row["event_date"], row["event_date"]),), (Scope("users"),))


async def active_users_series(ctx: QueryContext, window_minutes: int, minutes: int) -> QueryResult:
    """Per minute, the `window_minutes` sliding distinct users, for the `minutes` ending with the newest."""
    column = sql.Identifier(ACTIVE_USER_WINDOWS[window_minutes])
    latest = await _fetch(ctx, LATEST_COMPLETE_MINUTE, {})
    if not latest:
        data = {"window_minutes": window_minutes, "from": None, "to": None, "points": []}
        return await _result(ctx, data, (), (Scope("users"),))
    last: datetime = latest[0]["minute_start"]
    first = last - timedelta(minutes=minutes - 1)
    rows = await _fetch(
        ctx,
        sql.SQL(
            "SELECT minute_start, {column} AS users FROM analytics.active_users_minute"
            " WHERE event_date BETWEEN %(d0)s AND %(d1)s AND minute_start BETWEEN %(t0)s AND %(t1)s"
        ).format(column=column),
        {"d0": first.date(), "d1": last.date(), "t0": first, "t1": last},
    )
    by_minute = {row["minute_start"]: row["users"] for row in rows}
    points = []
    for offset in range(minutes):
        minute = first + timedelta(minutes=offset)
        points.append({"minute_start": minute, "active_users": by_minute.get(minute)})
    data = {"window_minutes": window_minutes, "from": first, "to": last, "points": points}
    scope = Scope("users", first.date(), last.date())
    return await _result(ctx, data, (scope,), (Scope("users"),))


async def users_daily(ctx: QueryContext, window: Window) -> QueryResult:
    """DAU/WAU/MAU, sessions and views per UTC day (null for a day without a row)."""
    rows = await _fetch(
        ctx,
        "SELECT event_date, dau, wau, mau, sessions, page_views, product_views FROM analytics.users_daily"
        " WHERE event_date BETWEEN %(d0)s AND %(d1)s",
        {"d0": window.first, "d1": window.last},
    )
    by_day = {row["event_date"]: row for row in rows}
    fields = ("dau", "wau", "mau", "sessions", "page_views", "product_views")
    days = []
    for day in _days(window):
        row = by_day.get(day)
        days.append({"date": day, **{name: (row[name] if row else None) for name in fields}})
    data = {"from": window.first, "to": window.last, "days": days}
    return await _result(ctx, data, (Scope("users", window.first, window.last),))


async def _funnel_rows(ctx: QueryContext, window: Window, filters: Mapping[str, str]) -> dict[date, dict[str, int]]:
    """Funnel stage sums per UTC day, over the rows matching the filters."""
    conditions = [sql.SQL("event_date BETWEEN %(d0)s AND %(d1)s")]
    params: dict[str, Any] = {"d0": window.first, "d1": window.last}
    for column, value in sorted(filters.items()):
        if column not in FUNNEL_FILTERS:
            raise ValueError(f"funnel_daily has no filter column {column!r}")
        conditions.append(sql.SQL("{col} = {value}").format(col=sql.Identifier(column), value=sql.Placeholder(column)))
        params[column] = value
    query = sql.SQL("SELECT event_date, {sums} FROM analytics.funnel_daily WHERE {where} GROUP BY event_date").format(
        sums=sql.SQL(", ").join(
            sql.SQL("sum({col}) AS {col}").format(col=sql.Identifier(stage)) for stage in FUNNEL_STAGES
        ),
        where=sql.SQL(" AND ").join(conditions),
    )
    rows = await _fetch(ctx, query, params)
    return {row["event_date"]: {stage: int(row[stage]) for stage in FUNNEL_STAGES} for row in rows}


def _sum_days(by_day: Mapping[date, Mapping[str, int]], fields: Sequence[str]) -> dict[str, int]:
    return {name: sum(day[name] for day in by_day.values()) for name in fields}


async def funnel(ctx: QueryContext, window: Window, filters: Mapping[str, str]) -> QueryResult:
    """Sessions reaching each funnel stage over the window, with step and overall conversion."""
    totals = _sum_days(await _funnel_rows(ctx, window, filters), FUNNEL_STAGES)
    stages = []
    previous: int | None = None
    for stage in FUNNEL_STAGES:
        count = totals[stage]
        stages.append(
            {
                "stage": stage,
                "sessions": count,
                "rate_from_start": ratio(count, totals["sessions"]),
                "rate_from_previous": None if previous is None else ratio(count, previous),
            }
        )
        previous = count
    data = {
        "from": window.first,
        "to": window.last,
        "stages": stages,
        "conversion_rate": conversion_rate(totals["purchase_sessions"], totals["sessions"]),
    }
    return await _result(ctx, data, (Scope("funnel", window.first, window.last),))


async def cart_abandonment(ctx: QueryContext, window: Window, filters: Mapping[str, str]) -> QueryResult:
    """Per UTC day and in total: cart sessions, purchase sessions, 1 − purchases / carts."""
    by_day = await _funnel_rows(ctx, window, filters)
    days = []
    for day in _days(window):
        row = by_day.get(day, dict.fromkeys(FUNNEL_STAGES, 0))
        days.append(
            {
                "date": day,
                "cart_sessions": row["cart_sessions"],
                "purchase_sessions": row["purchase_sessions"],
                "abandonment_rate": cart_abandonment_rate(row["purchase_sessions"], row["cart_sessions"]),
            }
        )
    totals = _sum_days(by_day, ("cart_sessions", "purchase_sessions"))
    data = {
        "from": window.first,
        "to": window.last,
        "days": days,
        "totals": {
            **totals,
            "abandonment_rate": cart_abandonment_rate(totals["purchase_sessions"], totals["cart_sessions"]),
        },
    }
    return await _result(ctx, data, (Scope("funnel", window.first, window.last),))


async def returning_customers(ctx: QueryContext, window: Window) -> QueryResult:
    """Per UTC day and in total (customer-days): customers, first-time vs returning, and their rate."""
    rows = await _fetch(
        ctx,
        "SELECT event_date, customers, first_time_customers, returning_customers, orders, first_time_orders,"
        " returning_orders FROM analytics.customers_daily WHERE event_date BETWEEN %(d0)s AND %(d1)s",
        {"d0": window.first, "d1": window.last},
    )
    by_day = {row["event_date"]: {name: int(row[name]) for name in CUSTOMER_MEASURES} for row in rows}
    days = []
    for day in _days(window):
        row = by_day.get(day, dict.fromkeys(CUSTOMER_MEASURES, 0))
        days.append(
            {
                "date": day,
                **row,
                "returning_customer_rate": returning_customer_rate(row["returning_customers"], row["customers"]),
            }
        )
    totals = _sum_days(by_day, CUSTOMER_MEASURES)
    data = {
        "from": window.first,
        "to": window.last,
        "days": days,
        "totals": {
            **totals,
            "returning_customer_rate": returning_customer_rate(totals["returning_customers"], totals["customers"]),
        },
    }
    return await _result(ctx, data, (Scope("customers", window.first, window.last),))
