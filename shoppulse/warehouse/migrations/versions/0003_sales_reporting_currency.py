"""Sales converted into the reporting currency (daily and hourly), written by the `sales` rollup.

Each row sums the day's (hour's) native-currency sales converted with that UTC day's `fx_rates`
(factor = per_usd(reporting) / per_usd(native) × 10^(exponent difference)), exactly, and rounds each
money value half-to-even once. Counts (orders, units) are plain sums. `currency` is the reporting
currency (Settings.reporting_currency). Rows are replaced per `event_date` like every rollup table.

Revision ID: 0003
Revises: 0001
"""

from alembic import op

revision = "0003"
down_revision = "0001"
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


def upgrade() -> None:
    op.execute(f"""
    CREATE TABLE IF NOT EXISTS analytics.sales_daily_reporting (
        event_date date    NOT NULL,
        currency   char(3) NOT NULL,
        {SALES_MEASURES},
        PRIMARY KEY (event_date, currency)
    );
    COMMENT ON TABLE analytics.sales_daily_reporting IS
        'Sales per UTC day in the reporting currency: native sums × that day''s FX factor, rounded half-even once.';
    CREATE TABLE IF NOT EXISTS analytics.sales_hourly_reporting (
        event_date date        NOT NULL,
        hour_start timestamptz NOT NULL,
        currency   char(3)     NOT NULL,
        {SALES_MEASURES},
        PRIMARY KEY (event_date, hour_start, currency)
    );
    COMMENT ON TABLE analytics.sales_hourly_reporting IS
        'Sales per UTC hour in the reporting currency: native sums × the UTC day''s FX factor, rounded half-even once.';
    """)


def downgrade() -> None:
    raise NotImplementedError("forward-only migrations")
