"""Per-day state of incremental folding (shoppulse/rollups/incremental): what a live run needs to fold
only the events that arrived since the lake version it last folded, exactly.

Every table is keyed by `event_date` (the partition) and written in the same transaction as the
serving rows and ledger rows it produced, so it always reflects `fold_days.lake_version`.

Revision ID: 0015
Revises: 0014
"""

from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""
    CREATE TABLE IF NOT EXISTS analytics.fold_days (
        event_date      date        PRIMARY KEY,
        lake_version    bigint      NOT NULL,
        window_digest   text        NOT NULL,
        window_version  bigint      NOT NULL,
        max_event_ts    timestamptz,
        last_minute     timestamptz,
        before_7d       bigint      NOT NULL,
        before_30d      bigint      NOT NULL,
        new_7d          bigint      NOT NULL,
        new_30d         bigint      NOT NULL,
        updated_at      timestamptz NOT NULL DEFAULT now()
    );
    COMMENT ON TABLE analytics.fold_days IS
        'Header of a partition''s fold state: the lake version it reflects and the users window it assumed.';
    CREATE TABLE IF NOT EXISTS analytics.fold_events (
        event_date      date        NOT NULL,
        event_id        text        NOT NULL,
        kafka_ts        timestamptz,
        kafka_partition integer,
        kafka_offset    bigint,
        PRIMARY KEY (event_date, event_id)
    );
    COMMENT ON TABLE analytics.fold_events IS 'Each event_id folded into the day, with its winning copy''s order.';
    CREATE TABLE IF NOT EXISTS analytics.fold_sessions (
        event_date            date        NOT NULL,
        session_id            text        NOT NULL,
        first_ts              timestamptz NOT NULL,
        first_event_id        text        NOT NULL,
        country               text,
        channel               text,
        device                text,
        product_view_sessions boolean     NOT NULL,
        cart_sessions         boolean     NOT NULL,
        checkout_sessions     boolean     NOT NULL,
        purchase_sessions     boolean     NOT NULL,
        PRIMARY KEY (event_date, session_id)
    );
    COMMENT ON TABLE analytics.fold_sessions IS
        'Each session of the day: its first event and the funnel steps reached.';
    CREATE TABLE IF NOT EXISTS analytics.fold_users (
        event_date  date NOT NULL,
        user_id     text NOT NULL,
        last_before date,
        PRIMARY KEY (event_date, user_id)
    );
    COMMENT ON TABLE analytics.fold_users IS
        'Each user active on the day, with their last active day in the 29 days before (null: none).';
    CREATE TABLE IF NOT EXISTS analytics.fold_window (
        event_date  date NOT NULL,
        user_id     text NOT NULL,
        last_before date NOT NULL,
        PRIMARY KEY (event_date, user_id)
    );
    COMMENT ON TABLE analytics.fold_window IS 'Users active in the 29 days before the day, with their last active day.';
    CREATE TABLE IF NOT EXISTS analytics.fold_customers (
        event_date  date    NOT NULL,
        user_id     text    NOT NULL,
        first_order boolean NOT NULL,
        PRIMARY KEY (event_date, user_id)
    );
    COMMENT ON TABLE analytics.fold_customers IS
        'Each customer who ordered on the day; whether one order was their first.';
    CREATE TABLE IF NOT EXISTS analytics.fold_session_hours (
        event_date   date        NOT NULL,
        hour_start   timestamptz NOT NULL,
        session_id   text        NOT NULL,
        PRIMARY KEY (event_date, hour_start, session_id)
    );
    COMMENT ON TABLE analytics.fold_session_hours IS
        'Each (UTC hour, session) with an event of the day: a session counts once per hour in traffic_hourly.';
    CREATE TABLE IF NOT EXISTS analytics.fold_minutes (
        event_date   date        NOT NULL,
        user_id      text        NOT NULL,
        minute_start timestamptz NOT NULL,
        PRIMARY KEY (event_date, user_id, minute_start)
    );
    COMMENT ON TABLE analytics.fold_minutes IS
        'Each (user, minute) with an event: the day''s and the previous day''s last hour (sliding windows).';
    CREATE TABLE IF NOT EXISTS analytics.fold_minute_counts (
        event_date   date        NOT NULL,
        minute_start timestamptz NOT NULL,
        users_1m     bigint      NOT NULL,
        users_5m     bigint      NOT NULL,
        users_15m    bigint      NOT NULL,
        users_30m    bigint      NOT NULL,
        users_60m    bigint      NOT NULL,
        PRIMARY KEY (event_date, minute_start)
    );
    COMMENT ON TABLE analytics.fold_minute_counts IS
        'Sliding distinct users of every minute of the day (active_users_minute serves those up to the newest event).';
    """)


def downgrade() -> None:
    raise NotImplementedError("forward-only migrations")
