"""Partitions whose rollup ledger lags the lake, as the `rollup_reconciler` sensor last saw them.

One row per (asset, partition) whose ledger row is missing or records an older lake version than the
lake holds; the reconciler replaces the whole table on every evaluation (a caught-up partition's row
disappears). `/health/freshness` reports it, so a partition that keeps failing (backing off) is
visible without opening Dagster.

Revision ID: 0014
Revises: 0003
"""

from alembic import op

revision = "0014"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""
    CREATE TABLE IF NOT EXISTS analytics.rollup_reconcile (
        asset            text        NOT NULL,
        partition_date   date        NOT NULL,
        ledger_version   bigint,
        lake_version     bigint      NOT NULL,
        attempts         integer     NOT NULL DEFAULT 0,
        in_flight        boolean     NOT NULL DEFAULT false,
        lagging_since    timestamptz NOT NULL,
        next_attempt_at  timestamptz,
        updated_at       timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (asset, partition_date)
    );
    COMMENT ON TABLE analytics.rollup_reconcile IS
        'Rollup partitions whose ledger lags the lake, and the reconciler''s retries (backoff) for them.';
    """)


def downgrade() -> None:
    raise NotImplementedError("forward-only migrations")
