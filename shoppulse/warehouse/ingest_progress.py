"""Per-partition Kafka progress of the lake, for the API's freshness endpoint (overwritten each drain)."""

from __future__ import annotations

import datetime as dt

import psycopg

UPSERT = """
INSERT INTO analytics.ingest_progress (topic, kafka_partition, next_offset, high_watermark, lake_version, updated_at)
VALUES (%s, %s, %s, %s, %s, %s)
ON CONFLICT (topic, kafka_partition) DO UPDATE SET
    next_offset = EXCLUDED.next_offset,
    high_watermark = EXCLUDED.high_watermark,
    lake_version = EXCLUDED.lake_version,
    updated_at = EXCLUDED.updated_at
WHERE analytics.ingest_progress.lake_version <= EXCLUDED.lake_version
"""


def record_progress(
    database_url: str,
    topic: str,
    next_offsets: dict[int, int],
    high_watermarks: dict[int, int],
    lake_version: int,
    at: dt.datetime | None = None,
) -> None:
    """Overwrite the progress rows of `topic` (idempotent: last writer wins, values only move forward)."""
    now = at or dt.datetime.now(dt.UTC)
    rows = [(topic, p, next_offsets.get(p, 0), hw, lake_version, now) for p, hw in sorted(high_watermarks.items())]
    with psycopg.connect(database_url, connect_timeout=5) as conn, conn.cursor() as cur:
        cur.executemany(UPSERT, rows)
