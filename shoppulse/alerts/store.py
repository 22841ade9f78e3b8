"""`analytics.alerts` and `analytics.alert_evaluations`: recording alerts once, and their public form."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from shoppulse.alerts.detector import Alert

PUBLIC_COLUMNS = (
    "id",
    "rule",
    "direction",
    "hour_start",
    "observed",
    "baseline",
    "score",
    "severity",
    "message",
    "detected_at",
)
"""Columns of an alert as the API lists it and the webhook sends it, in that order."""

SELECT_PUBLIC = f"SELECT {', '.join(PUBLIC_COLUMNS)} FROM analytics.alerts"

_INSERT = (
    "INSERT INTO analytics.alerts (id, rule, direction, hour_start, observed, baseline, score, severity, message,"
    " details, detected_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
    " ON CONFLICT (id) DO NOTHING RETURNING id"
)


def _finite(value: float | None) -> float | None:
    return None if value is None or value != value or value in (float("inf"), float("-inf")) else float(value)


def insert_alerts(conn: psycopg.Connection, alerts: Iterable[Alert], detected_at: dt.datetime) -> list[Alert]:
    """Insert alerts not recorded yet (by id); returns the new ones. Call inside a transaction."""
    new = []
    for alert in alerts:
        row = conn.execute(
            _INSERT,
            (
                alert.id,
                alert.rule,
                alert.direction,
                alert.hour_start,
                float(alert.observed),
                float(alert.baseline),
                _finite(alert.score),
                alert.severity,
                alert.message,
                Jsonb(dict(alert.details)),
                detected_at,
            ),
        ).fetchone()
        if row is not None:
            new.append(alert)
    return new


def record_hour(
    conn: psycopg.Connection, hour_start: dt.datetime, alerts: Sequence[Alert], evaluated_at: dt.datetime
) -> list[Alert]:
    """Record one evaluated hour and its alerts atomically (idempotent); returns the alerts new to the table."""
    with conn.transaction():
        new = insert_alerts(conn, alerts, evaluated_at)
        conn.execute(
            "INSERT INTO analytics.alert_evaluations (hour_start, evaluated_at, alerts) VALUES (%s, %s, %s)"
            " ON CONFLICT (hour_start) DO NOTHING",
            (hour_start, evaluated_at, len(alerts)),
        )
    return new


def evaluated_hours(conn: psycopg.Connection, since: dt.datetime) -> set[dt.datetime]:
    rows = conn.execute("SELECT hour_start FROM analytics.alert_evaluations WHERE hour_start >= %s", (since,))
    return {row[0] for row in rows.fetchall()}


def _iso(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def public_alert(row: Sequence[Any] | Mapping[str, Any]) -> dict[str, Any]:
    """An alert row (PUBLIC_COLUMNS order, or a dict) as the API and the webhook show it."""
    values = dict(row) if isinstance(row, Mapping) else dict(zip(PUBLIC_COLUMNS, row, strict=True))
    return {
        **values,
        "hour_start": _iso(values["hour_start"]),
        "detected_at": _iso(values["detected_at"]),
        "observed": float(values["observed"]),
        "baseline": float(values["baseline"]),
        "score": None if values["score"] is None else float(values["score"]),
    }
