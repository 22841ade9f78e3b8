"""Run the detector against the serving tables: the plain-Python body of the Dagster `alerts` asset.

An hour H is *complete* when SETTLE (5 min) has passed since it ended and the watermark of the
sales and users rollups (the newest event both include) is at or past its end. Complete hours of the
last LOOKBACK_HOURS (48) not yet in `alert_evaluations` are evaluated once each, oldest first; the
alerts of an hour and its evaluation row are written in one transaction, so a crash re-evaluates the
hour and the stable alert ids keep each alert recorded once.

Inputs (a partition absent from the ledger is *missing*, never zero):
- net sales and orders: `sales_hourly_reporting` (reporting currency), ledger asset `sales`;
- sessions, payments and accepted events: `traffic_hourly`, ledger asset `users`;
- quarantined messages: `quarantine_hourly`, by the hour received (no row = none quarantined).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import psycopg

from shoppulse.alerts import webhook
from shoppulse.alerts.detector import (
    NET_SALES,
    ORDERS,
    SESSIONS,
    Alert,
    HourInputs,
    hour_alerts,
    stalled_alert,
)
from shoppulse.alerts.store import evaluated_hours, insert_alerts, record_hour
from shoppulse.settings import Settings

logger = logging.getLogger(__name__)

HOUR = dt.timedelta(hours=1)
WEEK = dt.timedelta(days=7)
SALES_ASSET, TRAFFIC_ASSET = "sales", "users"
WATERMARK_ASSETS = (SALES_ASSET, TRAFFIC_ASSET)
SETTLE = dt.timedelta(minutes=5)
"""An hour is evaluated at least this long after it ends (and once the rollups' watermark passed it)."""
LOOKBACK_HOURS = 48
"""Complete hours this far back that were never evaluated (the detector was down) are evaluated."""


def floor_hour(moment: dt.datetime) -> dt.datetime:
    return moment.astimezone(dt.UTC).replace(minute=0, second=0, microsecond=0)


@dataclass
class DetectorRun:
    """What one run of the detector did."""

    hours_evaluated: list[dt.datetime] = field(default_factory=list)
    new_alerts: list[Alert] = field(default_factory=list)
    watermark: dt.datetime | None = None
    delivery: webhook.DeliveryReport | None = None


class HourlySeries:
    """The detector's hourly inputs for a set of hours, read in a few queries."""

    def __init__(self, conn: psycopg.Connection, hours: Iterable[dt.datetime], reporting_currency: str) -> None:
        hours = sorted(set(hours))
        days = sorted({h.date() for h in hours})
        ledger = conn.execute(
            "SELECT asset, partition_date FROM analytics.materializations"
            " WHERE asset = ANY(%s) AND partition_date = ANY(%s)",
            (list(WATERMARK_ASSETS), days),
        ).fetchall()
        self.materialized = {(asset, day) for asset, day in ledger}
        sales = conn.execute(
            "SELECT hour_start, sum(orders), sum(net_sales) FROM analytics.sales_hourly_reporting"
            " WHERE currency = %s AND hour_start = ANY(%s) GROUP BY hour_start",
            (reporting_currency, hours),
        ).fetchall()
        self.sales = {hour: (int(orders), int(net)) for hour, orders, net in sales}
        traffic = conn.execute(
            "SELECT hour_start, sum(sessions), sum(events), sum(payment_attempts), sum(payment_failures)"
            " FROM analytics.traffic_hourly WHERE hour_start = ANY(%s) GROUP BY hour_start",
            (hours,),
        ).fetchall()
        self.traffic = {row[0]: tuple(int(v) for v in row[1:]) for row in traffic}
        quarantine = conn.execute(
            "SELECT hour_start, sum(messages) FROM analytics.quarantine_hourly"
            " WHERE hour_start = ANY(%s) GROUP BY hour_start",
            (hours,),
        ).fetchall()
        self.quarantine = {hour: int(messages) for hour, messages in quarantine}

    def level(self, rule: str, hour: dt.datetime) -> float | None:
        """The hour's value of a level rule, 0 when its partition is materialized without a row, else None."""
        if rule == SESSIONS:
            if (TRAFFIC_ASSET, hour.date()) not in self.materialized:
                return None
            return float(self.traffic.get(hour, (0, 0, 0, 0))[0])
        if (SALES_ASSET, hour.date()) not in self.materialized:
            return None
        orders, net_sales = self.sales.get(hour, (0, 0))
        return float(orders if rule == ORDERS else net_sales)

    def traffic_of(self, hour: dt.datetime) -> tuple[int, int, int, int] | None:
        """(sessions, events, payment_attempts, payment_failures), None when not materialized."""
        if (TRAFFIC_ASSET, hour.date()) not in self.materialized:
            return None
        return self.traffic.get(hour, (0, 0, 0, 0))  # type: ignore[return-value]


def baseline_hours(hour: dt.datetime, weeks: int) -> list[dt.datetime]:
    """The same hour-of-week in each of the `weeks` previous weeks, newest first."""
    return [hour - k * WEEK for k in range(1, weeks + 1)]


def _share_baselines(
    conn: psycopg.Connection, hour: dt.datetime, hours_back: int
) -> tuple[tuple[int, int], tuple[int, int]]:
    """Pooled (failures, attempts) and (quarantined, quarantined + events) over the `hours_back` hours before."""
    since = hour - hours_back * HOUR
    failures, attempts, events = conn.execute(
        "SELECT coalesce(sum(payment_failures), 0), coalesce(sum(payment_attempts), 0), coalesce(sum(events), 0)"
        " FROM analytics.traffic_hourly WHERE hour_start >= %s AND hour_start < %s",
        (since, hour),
    ).fetchone()  # type: ignore[misc]
    (quarantined,) = conn.execute(  # type: ignore[misc]
        "SELECT coalesce(sum(messages), 0) FROM analytics.quarantine_hourly WHERE hour_start >= %s AND hour_start < %s",
        (since, hour),
    ).fetchone()
    return (int(failures), int(attempts)), (int(quarantined), int(quarantined) + int(events))


def hour_inputs(conn: psycopg.Connection, hours: Sequence[dt.datetime], settings: Settings) -> list[HourInputs]:
    """The detector's inputs for each of `hours` (complete hours, UTC hour starts)."""
    weeks = settings.alert_baseline_weeks
    needed = [h for hour in hours for h in (hour, *baseline_hours(hour, weeks))]
    series = HourlySeries(conn, needed, settings.reporting_currency)
    result = []
    for hour in hours:
        levels = {rule: series.level(rule, hour) for rule in (NET_SALES, ORDERS, SESSIONS)}
        history = {
            rule: [v for v in (series.level(rule, h) for h in baseline_hours(hour, weeks)) if v is not None]
            for rule in levels
        }
        traffic = series.traffic_of(hour)
        payments = quarantine = payments_base = quarantine_base = None
        if traffic is not None:
            _, events, attempts, failures = traffic
            quarantined = series.quarantine.get(hour, 0)
            payments, quarantine = (failures, attempts), (quarantined, quarantined + events)
            payments_base, quarantine_base = _share_baselines(conn, hour, settings.alert_share_baseline_hours)
        result.append(HourInputs(hour, levels, history, payments, payments_base, quarantine, quarantine_base))
    return result


def rollup_watermark(conn: psycopg.Connection) -> dt.datetime | None:
    """The newest event time both the sales and the users rollups include (None before either ran)."""
    rows = conn.execute(
        "SELECT asset, max(max_event_ts) FROM analytics.materializations WHERE asset = ANY(%s) GROUP BY asset",
        (list(WATERMARK_ASSETS),),
    ).fetchall()
    newest = {asset: ts for asset, ts in rows if ts is not None}
    if set(newest) != set(WATERMARK_ASSETS):
        return None
    return min(newest.values())


def kafka_lag(conn: psycopg.Connection) -> int | None:
    row = conn.execute("SELECT sum(lag) FROM analytics.ingest_progress").fetchone()
    return None if row is None or row[0] is None else int(row[0])


def pending_hours(
    conn: psycopg.Connection, now: dt.datetime, watermark: dt.datetime | None, lookback_hours: int = LOOKBACK_HOURS
) -> list[dt.datetime]:
    """Complete hours of the last `lookback_hours` not evaluated yet, oldest first."""
    if watermark is None:
        return []
    newest = floor_hour(now) - HOUR
    oldest = newest - (lookback_hours - 1) * HOUR
    done = evaluated_hours(conn, oldest)
    hours = []
    hour = oldest
    while hour <= newest:
        end = hour + HOUR
        if hour not in done and end + SETTLE <= now and watermark >= end:
            hours.append(hour)
        hour += HOUR
    return hours


def evaluate_hours(
    conn: psycopg.Connection, hours: Sequence[dt.datetime], settings: Settings, now: dt.datetime
) -> list[Alert]:
    """Evaluate the given complete hours (recording each); returns the alerts new to the table."""
    new: list[Alert] = []
    for inputs in hour_inputs(conn, hours, settings):
        new.extend(record_hour(conn, inputs.hour_start, hour_alerts(inputs, settings), now))
    return new


def run_detector(
    database_url: str, settings: Settings, now: dt.datetime | None = None, lookback_hours: int = LOOKBACK_HOURS
) -> DetectorRun:
    """Evaluate pending complete hours, check for a stalled pipeline, then send new alerts to the webhook."""
    now = now or dt.datetime.now(dt.UTC)
    run = DetectorRun()
    with psycopg.connect(database_url, autocommit=True) as conn:
        run.watermark = rollup_watermark(conn)
        hours = pending_hours(conn, now, run.watermark, lookback_hours)
        run.hours_evaluated = hours
        run.new_alerts = evaluate_hours(conn, hours, settings, now)
        stalled = stalled_alert(run.watermark, now, kafka_lag(conn), settings)
        if stalled is not None:
            with conn.transaction():
                run.new_alerts.extend(insert_alerts(conn, [stalled], now))
        if settings.alert_webhook_url:
            run.delivery = webhook.deliver_pending(conn, settings.alert_webhook_url, now)
    for alert in run.new_alerts:
        logger.warning("alert %s: %s", alert.id, alert.message)
    return run
