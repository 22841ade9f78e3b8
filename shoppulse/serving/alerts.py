"""`/analytics/alerts`: the anomalies recorded in `analytics.alerts` for a window of UTC days.

Meta: `as_of` is when the detector last evaluated an hour (or recorded an alert), `watermark` the end of
the newest evaluated hour, `complete` whether the detector has evaluated past the window's end.
"""

from __future__ import annotations

from datetime import timedelta

from psycopg.rows import dict_row

from shoppulse.alerts.store import SELECT_PUBLIC
from shoppulse.serving.results import Meta, QueryContext, QueryResult
from shoppulse.serving.timeframe import Window

HOUR = timedelta(hours=1)


async def list_alerts(ctx: QueryContext, window: Window) -> QueryResult:
    """Alerts whose hour starts within the window, newest hour first (then by id)."""
    async with ctx.conn.cursor(row_factory=dict_row) as cursor:
        await cursor.execute(
            f"{SELECT_PUBLIC} WHERE hour_start >= %(start)s AND hour_start < %(end)s ORDER BY hour_start DESC, id",
            {"start": window.start, "end": window.end},
        )
        alerts = await cursor.fetchall()
        await cursor.execute(
            "SELECT (SELECT max(evaluated_at) FROM analytics.alert_evaluations) AS evaluated_at,"
            " (SELECT max(detected_at) FROM analytics.alerts) AS detected_at,"
            " (SELECT max(hour_start) FROM analytics.alert_evaluations) AS newest_hour"
        )
        state = await cursor.fetchone()
    assert state is not None
    stamps = [stamp for stamp in (state["evaluated_at"], state["detected_at"]) if stamp is not None]
    watermark = state["newest_hour"] + HOUR if state["newest_hour"] is not None else None
    complete = watermark is not None and watermark >= window.end
    meta = Meta(as_of=max(stamps) if stamps else None, watermark=watermark, complete=complete, tz="UTC")
    return QueryResult({"alerts": alerts}, meta, ())
