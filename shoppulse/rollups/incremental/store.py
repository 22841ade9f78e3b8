"""Keyed reads and writes of one partition's rows (serving tables and fold state) inside a transaction.

Rows are exchanged as Polars frames through session-local staging tables (COPY), so a fold reads and
rewrites only the keys it touches, whatever the size of the day.
"""

from __future__ import annotations

import datetime as dt

import polars as pl
import psycopg

from shoppulse.rollups.catalog import SCHEMA, ServingTable


def _table(name: str, key: tuple[str, ...], values: tuple[str, ...]) -> ServingTable:
    return ServingTable(name, (*key, *values), key)


FOLD_DAYS = _table(
    "fold_days",
    ("event_date",),
    (
        "lake_version",
        "window_digest",
        "window_version",
        "max_event_ts",
        "last_minute",
        "before_7d",
        "before_30d",
        "new_7d",
        "new_30d",
    ),
)
FOLD_EVENTS = _table("fold_events", ("event_date", "event_id"), ("kafka_ts", "kafka_partition", "kafka_offset"))
FOLD_SESSIONS = _table(
    "fold_sessions",
    ("event_date", "session_id"),
    (
        "first_ts",
        "first_event_id",
        "country",
        "channel",
        "device",
        "product_view_sessions",
        "cart_sessions",
        "checkout_sessions",
        "purchase_sessions",
    ),
)
FOLD_USERS = _table("fold_users", ("event_date", "user_id"), ("last_before",))
FOLD_WINDOW = _table("fold_window", ("event_date", "user_id"), ("last_before",))
FOLD_CUSTOMERS = _table("fold_customers", ("event_date", "user_id"), ("first_order",))
FOLD_SESSION_HOURS = _table("fold_session_hours", ("event_date", "hour_start", "session_id"), ())
FOLD_USER_MINUTES = _table("fold_user_minutes", ("event_date", "user_id"), ("minutes",))
FOLD_MINUTE_COUNTS = _table(
    "fold_minute_counts",
    ("event_date", "minute_start"),
    ("users_1m", "users_5m", "users_15m", "users_30m", "users_60m"),
)
STATE_TABLES = (
    FOLD_EVENTS,
    FOLD_SESSIONS,
    FOLD_USERS,
    FOLD_WINDOW,
    FOLD_CUSTOMERS,
    FOLD_SESSION_HOURS,
    FOLD_USER_MINUTES,
    FOLD_MINUTE_COUNTS,
    FOLD_DAYS,
)


def probe_plans(cur: psycopg.Cursor) -> None:
    """For the rest of the transaction, join staged keys to a table by index probes only: a fold touches
    a few thousand keys of a day that may hold millions of rows, and a hash or merge join would scan the
    whole partition (its cost would follow the day, not the batch)."""
    cur.execute("SET LOCAL enable_hashjoin = off")
    cur.execute("SET LOCAL enable_mergejoin = off")


def _csv(frame: pl.DataFrame, columns: tuple[str, ...]) -> bytes:
    return (
        frame.select(columns)
        .write_csv(include_header=False, datetime_format="%Y-%m-%d %H:%M:%S%.3f%z", null_value="")
        .encode()
    )


def _stage(cur: psycopg.Cursor, table: ServingTable, frame: pl.DataFrame, columns: tuple[str, ...]) -> str:
    """COPY `frame`'s `columns` into an empty session-local table shaped like `table`; returns its name."""
    stage = f"pg_temp.fold_stage_{table.name}_{len(columns)}"
    cur.execute(
        f"CREATE TEMP TABLE IF NOT EXISTS {stage.removeprefix('pg_temp.')} ON COMMIT DROP AS "
        f"SELECT {', '.join(columns)} FROM {SCHEMA}.{table.name} WITH NO DATA"
    )
    cur.execute(f"TRUNCATE {stage}")
    with cur.copy(f"COPY {stage} ({', '.join(columns)}) FROM STDIN (FORMAT csv)") as copy:
        copy.write(_csv(frame, columns))
    return stage


def _join(table: ServingTable, stage: str) -> str:
    return " AND ".join(f"t.{c} = s.{c}" for c in table.key)


def fetch(
    cur: psycopg.Cursor,
    table: ServingTable,
    keys: pl.DataFrame,
    schema: dict[str, pl.DataType],
    known_empty: bool = False,
) -> pl.DataFrame:
    """The rows of `table` whose keys are among `keys` (a frame with the key columns), as `schema`
    (`known_empty`: the caller knows there are none, e.g. the partition was just cleared). String
    columns are read as text (e.g. a `uuid` key)."""
    if keys.is_empty() or known_empty:
        return pl.DataFrame(schema=schema)
    stage = _stage(cur, table, keys.unique(table.key), table.key)
    columns = ", ".join(f"t.{c}::text" if schema[c] == pl.String else f"t.{c}" for c in table.columns)
    rows = cur.execute(f"SELECT {columns} FROM {SCHEMA}.{table.name} t JOIN {stage} s ON {_join(table, stage)}")
    return _frame(rows.fetchall(), table, schema)


def fetch_day(
    cur: psycopg.Cursor, table: ServingTable, day: dt.date, schema: dict[str, pl.DataType], where: str = ""
) -> pl.DataFrame:
    """All rows of the partition (optionally filtered by an SQL condition on it)."""
    condition = f" AND ({where})" if where else ""
    rows = cur.execute(
        f"SELECT {', '.join(table.columns)} FROM {SCHEMA}.{table.name} WHERE {table.date_column} = %s{condition}",
        (day,),
    )
    return _frame(rows.fetchall(), table, schema)


def _frame(rows: list[tuple], table: ServingTable, schema: dict[str, pl.DataType]) -> pl.DataFrame:
    frame = pl.DataFrame(rows, schema=list(table.columns), orient="row", infer_schema_length=None)
    casts = []
    for name in table.columns:
        dtype = schema[name]
        column = pl.col(name)
        if isinstance(dtype, pl.Datetime):
            column = column.cast(pl.Datetime("us", "UTC")) if frame[name].dtype == pl.Null else column
            column = column.dt.convert_time_zone("UTC").cast(dtype)
        elif dtype == pl.String and frame[name].dtype == pl.String:
            column = column.str.strip_chars_end(" ") if name == "currency" else column
        casts.append(column.cast(dtype).alias(name))
    return frame.select(casts)


def upsert(cur: psycopg.Cursor, table: ServingTable, rows: pl.DataFrame) -> int:
    """Make `rows` the rows of their keys (delete what is there, insert these). Returns rows inserted."""
    if rows.is_empty():
        return 0
    stage = _stage(cur, table, rows, table.columns)
    cur.execute(f"DELETE FROM {SCHEMA}.{table.name} t USING {stage} s WHERE {_join(table, stage)}")
    cur.execute(f"INSERT INTO {SCHEMA}.{table.name} ({', '.join(table.columns)}) SELECT * FROM {stage}")
    return cur.rowcount


def merge(cur: psycopg.Cursor, table: ServingTable, rows: pl.DataFrame) -> int:
    """Make `rows` the rows of their keys, updating the keys already present in place (no new index
    entries: a heap-only update when the page has room). Returns rows written."""
    if rows.is_empty():
        return 0
    stage = _stage(cur, table, rows, table.columns)
    values = ", ".join(f"{c} = EXCLUDED.{c}" for c in table.columns if c not in table.key)
    cur.execute(
        f"INSERT INTO {SCHEMA}.{table.name} ({', '.join(table.columns)}) SELECT * FROM {stage}"
        f" ON CONFLICT ({', '.join(table.key)}) DO UPDATE SET {values}"
    )
    return cur.rowcount


def insert(cur: psycopg.Cursor, table: ServingTable, rows: pl.DataFrame) -> None:
    """COPY rows whose keys are new (a key already present is an error: the transaction fails)."""
    if rows.is_empty():
        return
    with cur.copy(f"COPY {SCHEMA}.{table.name} ({', '.join(table.columns)}) FROM STDIN (FORMAT csv)") as copy:
        copy.write(_csv(rows, table.columns))


def delete(cur: psycopg.Cursor, table: ServingTable, keys: pl.DataFrame) -> None:
    """Delete the rows of these keys."""
    if keys.is_empty():
        return
    stage = _stage(cur, table, keys.unique(table.key), table.key)
    cur.execute(f"DELETE FROM {SCHEMA}.{table.name} t USING {stage} s WHERE {_join(table, stage)}")


def clear_day(cur: psycopg.Cursor, table: ServingTable, day: dt.date) -> None:
    cur.execute(f"DELETE FROM {SCHEMA}.{table.name} WHERE {table.date_column} = %s", (day,))
