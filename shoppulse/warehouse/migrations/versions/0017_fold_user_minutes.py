"""Smaller fold state for big days.

- Active users per minute: one row per (day, user) with their active minutes (two bytes each), instead
  of one row per (day, user, minute).
- `fold_events.event_id` is a `uuid` (16 bytes, not 37 of text): the lake holds only contract-valid
  lowercase UUIDs (other ids are quarantined by the drain), and the index that every batch probes and
  extends at random places is about half the size.

A batch reads and rewrites one row per user it touches (an index probe and, with the table's free space,
an in-place update), and a user's minutes cost two bytes each, not a row each. `fold_days` is emptied,
so every day with fold state rebuilds it from the lake on its next live run (state is derived data; the
serving rows stay until that rebuild's transaction replaces them).

Revision ID: 0017
Revises: 0016
"""

from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""
    CREATE TABLE IF NOT EXISTS analytics.fold_user_minutes (
        event_date  date  NOT NULL,
        user_id     text  NOT NULL,
        minutes     bytea NOT NULL,
        PRIMARY KEY (event_date, user_id)
    ) WITH (fillfactor = 80);
    COMMENT ON TABLE analytics.fold_user_minutes IS
        'Each user with an event in the day or the previous day''s last 59 minutes: those minutes, sorted, '
        'as 2-byte big-endian numbers m + 59 (m: minute of the day, negative before midnight).';
    ALTER TABLE analytics.fold_sessions SET (fillfactor = 80);
    DROP TABLE IF EXISTS analytics.fold_minutes;
    DELETE FROM analytics.fold_days;
    TRUNCATE analytics.fold_events;
    ALTER TABLE analytics.fold_events ALTER COLUMN event_id TYPE uuid USING event_id::uuid;
    COMMENT ON COLUMN analytics.fold_events.event_id IS 'The event_id (a contract-valid UUID).';
    """)


def downgrade() -> None:
    raise NotImplementedError("forward-only migrations")
