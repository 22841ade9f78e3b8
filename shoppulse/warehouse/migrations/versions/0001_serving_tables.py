"""Serving tables, the materialization ledger and ingest progress.

Every rollup table leads with `event_date` (the UTC day partition it belongs to), so a partition is
replaced with one `DELETE ... WHERE event_date = %s` plus a COPY, in the same transaction as its
ledger row in `analytics.materializations`. Money is BIGINT minor units of the row's `currency`.

Revision ID: 0001
Revises:
"""

from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

SALES_MEASURES = """
    orders       bigint NOT NULL,
    units        bigint NOT NULL,
    gross_sales  bigint NOT NULL,
    discounts    bigint NOT NULL,
    returns      bigint NOT NULL,
    net_sales    bigint NOT NULL,
    shipping     bigint NOT NULL,
    taxes        bigint NOT NULL,
    total_sales  bigint NOT NULL
"""

ITEM_MEASURES = """
    orders       bigint NOT NULL,
    units        bigint NOT NULL,
    gross_sales  bigint NOT NULL,
    discounts    bigint NOT NULL,
    returns      bigint NOT NULL,
    net_sales    bigint NOT NULL
"""


def upgrade() -> None:
    op.execute(f"""
    CREATE TABLE analytics.materializations (
        asset           text        NOT NULL,
        partition_date  date        NOT NULL,
        row_count       bigint      NOT NULL,
        lake_version    bigint      NOT NULL,
        source_offsets  jsonb       NOT NULL DEFAULT '{{}}'::jsonb,
        max_event_ts    timestamptz,
        run_id          text,
        materialized_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (asset, partition_date)
    );
    COMMENT ON TABLE analytics.materializations IS
        'One row per (asset, partition): what the serving rows were computed from and when.';
    COMMENT ON COLUMN analytics.materializations.lake_version IS
        'Lake commit sequence number the rollup read (monotonic; a rerun on unchanged data reads the same).';
    COMMENT ON COLUMN analytics.materializations.max_event_ts IS
        'Newest event_ts included: the data watermark.';

    CREATE TABLE analytics.ingest_progress (
        topic           text        NOT NULL,
        kafka_partition integer     NOT NULL,
        next_offset     bigint      NOT NULL,
        high_watermark  bigint      NOT NULL,
        lag             bigint      GENERATED ALWAYS AS (greatest(high_watermark - next_offset, 0)) STORED,
        lake_version    bigint      NOT NULL,
        updated_at      timestamptz NOT NULL,
        PRIMARY KEY (topic, kafka_partition)
    );
    COMMENT ON TABLE analytics.ingest_progress IS
        'Per Kafka partition: next offset the lake expects and the broker high watermark at the last drain.';

    CREATE TABLE analytics.fx_rates (
        rate_date date          NOT NULL,
        currency  char(3)       NOT NULL,
        per_usd   numeric(20,8) NOT NULL CHECK (per_usd > 0),
        PRIMARY KEY (rate_date, currency)
    );
    COMMENT ON TABLE analytics.fx_rates IS
        'Daily FX: units (major) of `currency` per 1 USD, the reporting currency. USD is 1.';

    CREATE TABLE analytics.sales_15m (
        event_date   date        NOT NULL,
        bucket_start timestamptz NOT NULL,
        currency     char(3)     NOT NULL,
        country      text        NOT NULL,
        channel      text        NOT NULL,
        device       text        NOT NULL,
        {SALES_MEASURES},
        PRIMARY KEY (event_date, bucket_start, currency, country, channel, device)
    );
    CREATE TABLE analytics.sales_hourly (
        event_date date        NOT NULL,
        hour_start timestamptz NOT NULL,
        currency   char(3)     NOT NULL,
        {SALES_MEASURES},
        PRIMARY KEY (event_date, hour_start, currency)
    );
    CREATE TABLE analytics.sales_daily (
        event_date date    NOT NULL,
        currency   char(3) NOT NULL,
        {SALES_MEASURES},
        PRIMARY KEY (event_date, currency)
    );

    CREATE TABLE analytics.category_sales_15m (
        event_date   date        NOT NULL,
        bucket_start timestamptz NOT NULL,
        currency     char(3)     NOT NULL,
        category     text        NOT NULL,
        country      text        NOT NULL,
        channel      text        NOT NULL,
        device       text        NOT NULL,
        {ITEM_MEASURES},
        PRIMARY KEY (event_date, bucket_start, currency, category, country, channel, device)
    );
    CREATE TABLE analytics.category_sales_daily (
        event_date date    NOT NULL,
        category   text    NOT NULL,
        currency   char(3) NOT NULL,
        {ITEM_MEASURES},
        PRIMARY KEY (event_date, category, currency)
    );
    CREATE TABLE analytics.product_sales_hourly (
        event_date date        NOT NULL,
        hour_start timestamptz NOT NULL,
        product_id text        NOT NULL,
        category   text        NOT NULL,
        currency   char(3)     NOT NULL,
        {ITEM_MEASURES},
        PRIMARY KEY (event_date, hour_start, product_id, currency)
    );
    CREATE TABLE analytics.product_sales_daily (
        event_date date    NOT NULL,
        product_id text    NOT NULL,
        category   text    NOT NULL,
        currency   char(3) NOT NULL,
        {ITEM_MEASURES},
        PRIMARY KEY (event_date, product_id, currency)
    );

    CREATE TABLE analytics.active_users_minute (
        event_date   date        NOT NULL,
        minute_start timestamptz NOT NULL,
        users_1m     bigint      NOT NULL,
        users_5m     bigint      NOT NULL,
        users_15m    bigint      NOT NULL,
        users_30m    bigint      NOT NULL,
        users_60m    bigint      NOT NULL,
        PRIMARY KEY (event_date, minute_start)
    );
    COMMENT ON TABLE analytics.active_users_minute IS
        'Distinct users active in the N minutes ending with this minute (inclusive), for N = 1, 5, 15, 30, 60.';
    CREATE TABLE analytics.users_daily (
        event_date    date   NOT NULL PRIMARY KEY,
        dau           bigint NOT NULL,
        wau           bigint NOT NULL,
        mau           bigint NOT NULL,
        sessions      bigint NOT NULL,
        page_views    bigint NOT NULL,
        product_views bigint NOT NULL
    );
    CREATE TABLE analytics.customers_daily (
        event_date           date   NOT NULL PRIMARY KEY,
        customers            bigint NOT NULL,
        first_time_customers bigint NOT NULL,
        returning_customers  bigint NOT NULL,
        orders               bigint NOT NULL,
        first_time_orders    bigint NOT NULL,
        returning_orders     bigint NOT NULL
    );
    CREATE TABLE analytics.funnel_daily (
        event_date            date   NOT NULL,
        country               text   NOT NULL,
        channel               text   NOT NULL,
        device                text   NOT NULL,
        sessions              bigint NOT NULL,
        product_view_sessions bigint NOT NULL,
        cart_sessions         bigint NOT NULL,
        checkout_sessions     bigint NOT NULL,
        purchase_sessions     bigint NOT NULL,
        PRIMARY KEY (event_date, country, channel, device)
    );

    CREATE TABLE analytics.quarantine_daily (
        event_date date   NOT NULL,
        reason     text   NOT NULL,
        events     bigint NOT NULL,
        PRIMARY KEY (event_date, reason)
    );
    COMMENT ON TABLE analytics.quarantine_daily IS
        'Messages the drain quarantined, by the UTC day the broker received them and the reason.';
    CREATE TABLE analytics.late_events_daily (
        event_date    date   NOT NULL,
        original_date date   NOT NULL,
        event_type    text   NOT NULL,
        events        bigint NOT NULL,
        PRIMARY KEY (event_date, original_date, event_type)
    );
    COMMENT ON TABLE analytics.late_events_daily IS
        'Events that arrived beyond the lateness horizon, by the UTC day received (event_date) and the day they '
        'happened (original_date). They are kept in the lake as adjustments, not in closed partitions.';
    """)


def downgrade() -> None:
    raise NotImplementedError("forward-only migrations")
