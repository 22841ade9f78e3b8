"""Hourly inputs of the anomaly detector, and the alerts it records.

- `traffic_hourly` (users rollup): per UTC hour of event time, sessions with any event in the hour,
  accepted events, payment attempts and failed payments. Replaced per `event_date` like every rollup.
- `quarantine_hourly` (ingest_quality rollup): messages quarantined per UTC hour the broker received
  them (`event_date` is the received date, as in `quarantine_daily`).
- `alerts`: one row per (rule, hour, direction), id `rule:YYYY-MM-DDTHHZ:direction`, written once
  (`ON CONFLICT DO NOTHING`); the webhook delivery state lives on the same row.
- `alert_evaluations`: the complete hours the detector has evaluated (each hour is evaluated once).

Revision ID: 0016
Revises: 0003
"""

from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""
    CREATE TABLE IF NOT EXISTS analytics.traffic_hourly (
        event_date       date        NOT NULL,
        hour_start       timestamptz NOT NULL,
        sessions         bigint      NOT NULL,
        events           bigint      NOT NULL,
        payment_attempts bigint      NOT NULL,
        payment_failures bigint      NOT NULL,
        PRIMARY KEY (event_date, hour_start)
    );
    COMMENT ON TABLE analytics.traffic_hourly IS
        'Per UTC hour of event time: distinct sessions with an event in the hour, accepted (deduplicated) '
        'events, payment events and failed payment events.';
    CREATE TABLE IF NOT EXISTS analytics.quarantine_hourly (
        event_date date        NOT NULL,
        hour_start timestamptz NOT NULL,
        messages   bigint      NOT NULL,
        PRIMARY KEY (event_date, hour_start)
    );
    COMMENT ON TABLE analytics.quarantine_hourly IS
        'Messages the drain quarantined, per UTC hour (and day, event_date) the broker received them.';

    CREATE TABLE IF NOT EXISTS analytics.alerts (
        id                 text             PRIMARY KEY,
        rule               text             NOT NULL,
        direction          text             NOT NULL CHECK (direction IN ('drop', 'spike')),
        hour_start         timestamptz      NOT NULL,
        observed           double precision NOT NULL,
        baseline           double precision NOT NULL,
        score              double precision,
        severity           text             NOT NULL CHECK (severity IN ('warning', 'critical')),
        message            text             NOT NULL,
        details            jsonb            NOT NULL DEFAULT '{}'::jsonb,
        detected_at        timestamptz      NOT NULL DEFAULT now(),
        webhook_attempts   integer          NOT NULL DEFAULT 0,
        webhook_sent_at    timestamptz,
        webhook_last_error text
    );
    CREATE INDEX IF NOT EXISTS alerts_hour_start ON analytics.alerts (hour_start);
    COMMENT ON TABLE analytics.alerts IS
        'Anomalies found on complete hours, one row per (rule, hour, direction), never rewritten except '
        'for the webhook delivery columns.';
    CREATE TABLE IF NOT EXISTS analytics.alert_evaluations (
        hour_start   timestamptz PRIMARY KEY,
        evaluated_at timestamptz NOT NULL DEFAULT now(),
        alerts       integer     NOT NULL
    );
    COMMENT ON TABLE analytics.alert_evaluations IS 'Complete hours the anomaly detector has evaluated.';
    """)


def downgrade() -> None:
    raise NotImplementedError("forward-only migrations")
