"""Idempotent partition replace: one transaction per (asset, partition) does DELETE + COPY of every
table of the asset, upserts the ledger row, and NOTIFYs the API — all visible at once, or not at all.

Concurrent writers of one (asset, partition) are serialized by a transaction-scoped advisory lock,
and a writer whose lake snapshot is older than the one already in the ledger skips (an equal version
rewrites, so reruns replace rows with identical rows).

A partition written for the first time is COPYed straight in. A rewrite (a rerun, or today's partition
re-materialized every few seconds) COPYs the new rows into a session-local staging table and changes
only what differs: rows that changed or disappeared are deleted, new and changed rows inserted. An
identical rerun writes nothing, and a live rewrite touches only the buckets that moved, instead of
deleting and re-inserting (and leaving dead rows and index entries for) the whole day.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import polars as pl
import psycopg
from psycopg.types.json import Jsonb

from shoppulse.rollups.catalog import SCHEMA, TABLES, ServingTable

NOTIFY_CHANNEL = "shoppulse_materialized"
LOCK_NAMESPACE = 0x5350_524F  # arbitrary int4: "partition replace" advisory locks
LOCK_TIMEOUT = "60s"

UPSERT_LEDGER = f"""
    INSERT INTO {SCHEMA}.materializations AS m
        (asset, partition_date, row_count, lake_version, source_offsets, max_event_ts, run_id, materialized_at)
    VALUES (%(asset)s, %(day)s, %(rows)s, %(version)s, %(offsets)s, %(max_event_ts)s, %(run_id)s, clock_timestamp())
    ON CONFLICT (asset, partition_date) DO UPDATE SET
        row_count = EXCLUDED.row_count,
        lake_version = EXCLUDED.lake_version,
        source_offsets = EXCLUDED.source_offsets,
        max_event_ts = EXCLUDED.max_event_ts,
        run_id = EXCLUDED.run_id,
        materialized_at = EXCLUDED.materialized_at
"""


@dataclass(frozen=True)
class PartitionWrite:
    """The complete new contents of one (asset, partition): rows of every table of the asset."""

    asset: str
    day: dt.date
    tables: Mapping[str, pl.DataFrame]
    lake_version: int
    source_offsets: Mapping[str, Any] = field(default_factory=dict)
    max_event_ts: dt.datetime | None = None
    run_id: str | None = None

    @property
    def row_count(self) -> int:
        return sum(frame.height for frame in self.tables.values())


@dataclass(frozen=True)
class WriteOutcome:
    asset: str
    day: dt.date
    written: bool
    row_count: int
    lake_version: int
    ledger_version: int | None
    """The ledger's lake_version before this write (None: first write of the partition)."""
    rows_changed: int = 0
    """Serving rows deleted plus inserted (a first write inserts all; an identical rerun changes none)."""


def _csv(table: ServingTable, frame: pl.DataFrame) -> bytes:
    missing = set(table.columns) - set(frame.columns)
    if missing:
        raise ValueError(f"{table.name}: rows lack columns {sorted(missing)}")
    ordered = frame.select(table.columns).sort(table.key)
    repeated = ordered.filter(ordered.select(table.key).is_duplicated())
    if not repeated.is_empty():
        keys = repeated.select(table.key).n_unique()
        raise ValueError(f"{table.name}: {keys} key(s) occur more than once, e.g. {repeated.row(0, named=True)}")
    return ordered.write_csv(include_header=False, datetime_format="%Y-%m-%d %H:%M:%S%.3f%z", null_value="").encode()


def _copy_rows(cur: psycopg.Cursor, target: str, table: ServingTable, payload: bytes) -> int:
    """COPY the CSV `payload` (the table's columns, in order) into `target`; returns the rows copied."""
    with cur.copy(f"COPY {target} ({', '.join(table.columns)}) FROM STDIN (FORMAT csv)") as copy:
        copy.write(payload)
    return cur.rowcount


def _replace_by_copy(cur: psycopg.Cursor, table: ServingTable, day: dt.date, payload: bytes) -> int:
    """Delete the partition's rows (normally none: its first write) and COPY the new ones in. Returns how
    many rows were deleted plus inserted."""
    cur.execute(f"DELETE FROM {table.qualified} WHERE {table.date_column} = %s", (day,))
    deleted = cur.rowcount
    return deleted + _copy_rows(cur, table.qualified, table, payload)


def _replace_changed_rows(cur: psycopg.Cursor, table: ServingTable, day: dt.date, payload: bytes) -> int:
    """Make the partition's rows equal the new ones, writing only the rows that differ. Returns how many
    rows were deleted plus inserted (0 for an identical rewrite)."""
    stage = f"shoppulse_stage_{table.name}"
    columns = ", ".join(table.columns)
    cur.execute(
        f"CREATE TEMP TABLE IF NOT EXISTS {stage} ON COMMIT DELETE ROWS AS "
        f"SELECT {columns} FROM {table.qualified} WITH NO DATA"
    )
    _copy_rows(cur, f"pg_temp.{stage}", table, payload)
    same_key = " AND ".join(f"s.{c} = t.{c}" for c in table.key)
    values = [c for c in table.columns if c not in table.key]
    same_values = (
        f"ROW({', '.join(f's.{c}' for c in values)}) IS NOT DISTINCT FROM ROW({', '.join(f't.{c}' for c in values)})"
        if values
        else "TRUE"
    )
    cur.execute(
        f"""DELETE FROM {table.qualified} t WHERE t.{table.date_column} = %s AND NOT EXISTS (
                SELECT 1 FROM pg_temp.{stage} s WHERE {same_key} AND {same_values})""",
        (day,),
    )
    changed = cur.rowcount
    cur.execute(
        f"""INSERT INTO {table.qualified} ({columns}) SELECT {columns} FROM pg_temp.{stage} s WHERE NOT EXISTS (
                SELECT 1 FROM {table.qualified} t WHERE t.{table.date_column} = %s AND {same_key})""",
        (day,),
    )
    return changed + cur.rowcount


def ledger_lake_version(db: psycopg.Connection | psycopg.Cursor, asset: str, day: dt.date) -> int | None:
    """The lake version the ledger records for (asset, day); None if the partition was never written."""
    row = db.execute(
        f"SELECT lake_version FROM {SCHEMA}.materializations WHERE asset = %s AND partition_date = %s", (asset, day)
    ).fetchone()
    return None if row is None else int(row[0])


def replace_partition(conn: psycopg.Connection, write: PartitionWrite) -> WriteOutcome:
    """Replace one (asset, partition) in one transaction (see module doc). `conn` must be in autocommit
    mode (the transaction is opened here)."""
    tables = TABLES[write.asset]
    if set(write.tables) != {t.name for t in tables}:
        raise ValueError(
            f"{write.asset}: expected rows for {sorted(t.name for t in tables)}, got {sorted(write.tables)}"
        )
    payloads = {t.name: _csv(t, write.tables[t.name]) for t in tables}
    with conn.transaction(), conn.cursor() as cur:
        cur.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
        cur.execute(
            "SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (LOCK_NAMESPACE, f"{write.asset}:{write.day.isoformat()}")
        )
        ledger_version = ledger_lake_version(cur, write.asset, write.day)
        if ledger_version is not None and ledger_version > write.lake_version:
            return WriteOutcome(write.asset, write.day, False, 0, write.lake_version, ledger_version)
        replace = _replace_by_copy if ledger_version is None else _replace_changed_rows
        changed = sum(replace(cur, table, write.day, payloads[table.name]) for table in tables)
        cur.execute(
            UPSERT_LEDGER,
            {
                "asset": write.asset,
                "day": write.day,
                "rows": write.row_count,
                "version": write.lake_version,
                "offsets": Jsonb(dict(write.source_offsets)),
                "max_event_ts": write.max_event_ts,
                "run_id": write.run_id,
            },
        )
        cur.execute("SELECT pg_notify(%s, %s)", (NOTIFY_CHANNEL, f"{write.asset}:{write.day.isoformat()}"))
    return WriteOutcome(write.asset, write.day, True, write.row_count, write.lake_version, ledger_version, changed)


def read_partition_rows(conn: psycopg.Connection, table: ServingTable, day: dt.date) -> pl.DataFrame:
    """A table's rows of one partition, sorted by key (for checks and tests)."""
    columns = ", ".join(table.columns)
    order = ", ".join(table.key)
    query = f"SELECT {columns} FROM {table.qualified} WHERE {table.date_column} = %s ORDER BY {order}"
    with conn.cursor() as cur:
        cur.execute(query, (day,))
        rows = cur.fetchall()
    return pl.DataFrame(rows, schema=list(table.columns), orient="row")
