"""Data-quality checks of the raw layer and the rollups (plain logic; `assets/checks.py` exposes them).

- raw layer, per events partition: the files have the contract's columns and types, key columns are
  never null and every row belongs to its partition, and the share of re-delivered copies is small;
- rollups: products and categories add up to the day's net sales (per currency), and the serving rows
  equal a fresh recompute from the lake.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import tempfile
from collections import Counter
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import TypeVar

import polars as pl
import psycopg
import psycopg.sql

from shoppulse.contract.schema import LAKE_SCHEMA
from shoppulse.lake.layout import LakeTable, PartitionSnapshot, read_partition
from shoppulse.lake.table import DATA_SCHEMA, LakeRef, polars_storage_options
from shoppulse.rollups import catalog
from shoppulse.rollups.catalog import SCHEMA, ServingTable
from shoppulse.rollups.fx import rates_in_force
from shoppulse.rollups.runner import (
    EventInputs,
    additive_rollup_writes_in_parts,
    event_rollup_writes,
    fx_write,
    quality_write,
)
from shoppulse.rollups.sliced import SLICED_ROLLUPS, sliced_rollup_writes
from shoppulse.rollups.source import scan_partition
from shoppulse.rollups.writer import PartitionWrite, ledger_lake_version
from shoppulse.settings import get_settings

T = TypeVar("T")
R = TypeVar("R")

KEY_COLUMNS = (
    "event_id",
    "event_type",
    "event_ts",
    "user_id",
    "session_id",
    "event_date",
    "kafka_partition",
    "kafka_offset",
    "kafka_ts",
)
"""Columns every lake row must have: identity, time, who, and where it came from."""

MAX_DUPLICATE_RATE = 0.05
"""Share of re-delivered copies above which the raw layer check warns (producer or drain trouble)."""


@dataclass(frozen=True)
class RawPartitionQuality:
    """What the raw-layer checks found in one events partition."""

    day: dt.date
    files: int
    rows: int
    schema_problems: list[str]
    null_keys: dict[str, int]
    outside_partition: int
    """Rows whose event_date is not the partition's day or not the UTC date of event_ts."""
    copies: int
    """Rows beyond the first of each (event_date, event_id)."""

    @property
    def duplicate_rate(self) -> float:
        return self.copies / self.rows if self.rows else 0.0


def _same_type(found: pl.DataType, contract: pl.DataType) -> bool:
    """Equal, up to the timestamp unit (optimize writes Delta's microseconds; drains write milliseconds)."""
    return found == contract or str(found).replace("μs", "ms") == str(contract)


def _schema_problems(snapshot: PartitionSnapshot, path: str) -> list[str]:
    found = pl.read_parquet_schema(path) if not snapshot.lake or "://" not in snapshot.lake else None
    if found is None:
        found = pl.scan_parquet(path, storage_options=polars_storage_options(snapshot.lake)).collect_schema()
    name_of_file = path.rsplit("/", 1)[-1]
    problems = []
    for name, dtype in LAKE_SCHEMA.items():
        if name not in found:
            problems.append(f"{name_of_file}: missing column {name}")
        elif not _same_type(found[name], dtype):
            problems.append(f"{name_of_file}: {name} is {found[name]}, contract says {dtype}")
    # A file optimize rewrote holds every column of the table (the quarantine ones all null).
    problems += [f"{name_of_file}: unexpected column {name}" for name in found if name not in DATA_SCHEMA]
    return problems


def raw_partition_quality(lake_dir: LakeRef, day: dt.date) -> RawPartitionQuality:
    """Check one events partition: schema per file (footer only), then one scan for the rest."""
    snapshot = read_partition(lake_dir, LakeTable.EVENTS, day)
    problems = [problem for path in snapshot.files for problem in _schema_problems(snapshot, path)]
    if not snapshot.files:
        return RawPartitionQuality(day, 0, 0, [], dict.fromkeys(KEY_COLUMNS, 0), 0, 0)
    row = (
        scan_partition(snapshot, {c: LAKE_SCHEMA[c] for c in KEY_COLUMNS})
        .select(
            pl.len(),
            *(pl.col(c).null_count().alias(c) for c in KEY_COLUMNS),
            (
                (pl.col("event_date") != day)
                | (pl.col("event_ts").dt.convert_time_zone("UTC").dt.date() != pl.col("event_date"))
            )
            .sum()
            .alias("outside"),
            (pl.len() - pl.struct("event_date", "event_id").n_unique()).alias("copies"),
        )
        .collect()
        .row(0)
    )
    rows, *null_counts, outside, copies = row
    return RawPartitionQuality(
        day=day,
        files=len(snapshot.files),
        rows=int(rows),
        schema_problems=problems,
        null_keys=dict(zip(KEY_COLUMNS, map(int, null_counts), strict=True)),
        outside_partition=int(outside),
        copies=int(copies),
    )


# -- Rollups ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SumMismatch:
    day: dt.date
    currency: str
    table: str
    table_net_sales: int
    sales_net_sales: int


NET_SALES_PARTS = (
    "product_sales_daily",
    "category_sales_daily",
    "product_sales_hourly",
    "category_sales_15m",
    "sales_15m",
)
"""Tables whose net sales, summed per day and currency, must equal `sales_daily`'s."""


def net_sales_mismatches(
    database_url: str, days: Sequence[dt.date], workers: int = 2
) -> tuple[list[dt.date], list[SumMismatch]]:
    """Days whose products, categories and 15-minute sales do not add up to `sales_daily` net sales.

    Only days where `sales` and `products` were computed from the same lake version are compared
    (returned first); a day where one of them is newer is waiting for the other's rerun. Over several
    days the tables are summed `workers` at a time, each on its own connection.
    """
    with psycopg.connect(database_url, autocommit=True) as conn:
        comparable = [
            row[0]
            for row in conn.execute(
                f"""
                SELECT s.partition_date FROM {SCHEMA}.materializations s
                JOIN {SCHEMA}.materializations p ON p.partition_date = s.partition_date AND p.asset = %s
                WHERE s.asset = %s AND s.partition_date = ANY(%s) AND s.lake_version = p.lake_version
                ORDER BY 1
                """,
                (catalog.PRODUCTS, catalog.SALES, list(days)),
            ).fetchall()
        ]
        if len(comparable) <= 1:  # a live run's day: a few small sums, not worth more connections
            return comparable, [m for table in NET_SALES_PARTS for m in _net_sales_mismatches(conn, table, comparable)]

    return comparable, _on_own_connections(
        database_url, lambda conn, table: _net_sales_mismatches(conn, table, comparable), NET_SALES_PARTS, workers
    )


def _on_own_connections(
    database_url: str, work: Callable[[psycopg.Connection, T], list[R]], items: Sequence[T], workers: int
) -> list[R]:
    """`work(conn, item)` for every item, `workers` at a time, each on a connection of its own; the results
    concatenated in the order of `items`."""

    def one(item: T) -> list[R]:
        with psycopg.connect(database_url, autocommit=True) as conn:
            return work(conn, item)

    with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="rollup-check") as pool:
        return [result for results in pool.map(one, items) for result in results]


def _net_sales_mismatches(conn: psycopg.Connection, table: str, days: list[dt.date]) -> list[SumMismatch]:
    """(day, currency) pairs of `days` where Σ net_sales of `table` differs from `sales_daily`'s."""
    rows = conn.execute(
        f"""
        WITH part AS (
            SELECT event_date, currency, sum(net_sales) AS net FROM {SCHEMA}.{table}
            WHERE event_date = ANY(%(days)s) GROUP BY 1, 2
        ), total AS (
            SELECT event_date, currency, net_sales AS net FROM {SCHEMA}.sales_daily WHERE event_date = ANY(%(days)s)
        )
        SELECT coalesce(part.event_date, total.event_date), coalesce(part.currency, total.currency),
               coalesce(part.net, 0), coalesce(total.net, 0)
        FROM part FULL JOIN total USING (event_date, currency)
        WHERE coalesce(part.net, 0) <> coalesce(total.net, 0)
        """,
        {"days": days},
    ).fetchall()
    return [SumMismatch(day, currency.strip(), table, int(net), int(sales)) for day, currency, net, sales in rows]


@dataclass
class RecomputeResult:
    """Serving rows of one (asset, partition) against a fresh recompute from the lake."""

    asset: str
    day: dt.date
    ledger_version: int | None
    lake_version: int
    differing_tables: dict[str, int] = field(default_factory=dict)
    """Table -> number of rows present on one side only."""
    sessions_across_users: int = 0
    """On a day recomputed in slices of users: sessions with events of more than one user, which make a
    rollup counting sessions (users, funnel) not comparable."""

    @property
    def comparable(self) -> bool:
        """The serving rows were computed from the lake snapshot just read (else the lake moved on)."""
        return self.ledger_version == self.lake_version and not self.sessions_across_users

    @property
    def matches(self) -> bool:
        return not self.differing_tables


_TS_TEXT = 'YYYY-MM-DD"T"HH24:MI:SS'


def _is_timestamp(column: str) -> bool:
    return column.endswith("_start")  # bucket_start, hour_start, minute_start: timestamptz


_NULL_TEXT = "\\N"
_FIELD_SEPARATOR = "\x1f"  # ASCII unit separator: never part of a serving value


def _canonical_text(frame: pl.DataFrame, table: ServingTable) -> pl.DataFrame:
    """Each column as canonical text: UTC ISO timestamps, plain numbers and dates, NULL as \\N."""
    return frame.select(
        (
            pl.col(c).dt.convert_time_zone("UTC").dt.strftime("%Y-%m-%dT%H:%M:%S")
            if _is_timestamp(c)
            else pl.col(c).cast(pl.String)
        ).fill_null(_NULL_TEXT)
        for c in table.columns
    )


def _served_text_columns(table: ServingTable) -> list[str]:
    """SQL expressions giving the same canonical text for what PostgreSQL serves."""
    return [
        f"coalesce(to_char({c} AT TIME ZONE 'UTC', '{_TS_TEXT}'), '{_NULL_TEXT}')"
        if _is_timestamp(c)
        else f"coalesce({c}::text, '{_NULL_TEXT}')"
        for c in table.columns
    ]


def _canonical_line_frame(frame: pl.DataFrame, table: ServingTable) -> pl.DataFrame:
    """The rows as canonical text lines (fields joined by the unit separator), in column `line`."""
    return _canonical_text(frame, table).select(line=pl.concat_str(pl.all(), separator=_FIELD_SEPARATOR))


def _served_lines_query(table: ServingTable) -> str:
    """SELECT of the same canonical lines for what PostgreSQL serves (one parameter: the day)."""
    line = f"concat_ws(E'\\x1f', {', '.join(_served_text_columns(table))})"
    return f"SELECT {line} AS line FROM {table.qualified} WHERE {table.date_column} = %s"


def _digest_of_frame(frame: pl.DataFrame, table: ServingTable) -> tuple[int, str | None]:
    """(rows, MD5 of the rows' canonical lines sorted bytewise and joined by newlines): the multiset's
    fingerprint, computed identically in SQL by `_digest_served`."""
    if frame.is_empty():
        return 0, None
    lines = _canonical_line_frame(frame, table).select(pl.col("line").sort().str.join("\n"))  # bytewise order
    return frame.height, hashlib.md5(lines.item().encode(), usedforsecurity=False).hexdigest()


def _digest_served(conn: psycopg.Connection, table: ServingTable, day: dt.date) -> tuple[int, str | None]:
    query = f"""SELECT count(*), md5(string_agg(line, E'\\n' ORDER BY line COLLATE "C"))
                FROM ({_served_lines_query(table)}) AS served"""
    row = conn.execute(query, (day,)).fetchone()
    assert row is not None
    return int(row[0]), row[1]


def compare_with_serving(conn: psycopg.Connection, write: PartitionWrite) -> RecomputeResult:
    """Compare a recomputed partition with what PostgreSQL serves (and the ledger's lake version).

    Fingerprints are compared first (PostgreSQL returns one MD5 per table, not the rows); only a table
    whose fingerprint differs is fetched row by row to count the rows present on one side only.
    """
    ledger = ledger_lake_version(conn, write.asset, write.day)
    result = RecomputeResult(write.asset, write.day, ledger, write.lake_version)
    for table in catalog.TABLES[write.asset]:
        frame = write.tables[table.name]
        if _digest_of_frame(frame, table) == _digest_served(conn, table, write.day):
            continue
        fresh = Counter(_canonical_line_frame(frame, table)["line"].to_list())
        served = Counter(line for (line,) in conn.execute(_served_lines_query(table), (write.day,)).fetchall())
        if fresh != served:
            result.differing_tables[table.name] = sum(((fresh - served) + (served - fresh)).values())
    return result


def recompute_and_compare(
    lake_dir: LakeRef, conn: psycopg.Connection, assets: Collection[str], day: dt.date, reporting_currency: str
) -> list[RecomputeResult]:
    """Recompute the given rollups of `day` from the lake (nothing written) and compare with the serving rows.

    Each asset is recomputed as of the table version its ledger row records (the rows it serves were
    computed from exactly that version), so a lake that moved on since does not make it incomparable.
    """
    writes: list[PartitionWrite] = []
    writes_skipped: list[RecomputeResult] = []
    event_assets = [a for a in catalog.EVENT_ROLLUPS if a in assets]
    by_version: dict[int | None, list[str]] = {}
    for asset in event_assets:
        by_version.setdefault(ledger_lake_version(conn, asset, day), []).append(asset)

    def fx(d: dt.date, currencies: Collection[str]) -> dict[str, Decimal]:
        return rates_in_force(conn, d, currencies)

    limit = get_settings().recompute_check_max_events
    for version, group in by_version.items():
        snapshot = read_partition(lake_dir, LakeTable.EVENTS, day, version)
        if snapshot.rows > limit:  # too large for memory: sums in parts of events, distinct counts in slices of users
            writes += additive_rollup_writes_in_parts(snapshot, group, fx, reporting_currency, limit)
            with tempfile.TemporaryDirectory(prefix="shoppulse-check-") as scratch:
                sliced = sliced_rollup_writes(lake_dir, snapshot, group, limit, Path(scratch))
            writes += sliced.writes
            done = {w.asset for w in sliced.writes}
            for asset in (a for a in group if a in SLICED_ROLLUPS and a not in done):
                skipped = RecomputeResult(asset, day, version, snapshot.version)
                skipped.sessions_across_users = sliced.sessions_across_users
                writes_skipped.append(skipped)
            continue
        inputs = EventInputs(lake_dir, with_users=catalog.USERS in group, version=version).read(day)
        writes += event_rollup_writes(inputs, group, fx, reporting_currency)
    if catalog.FX_RATES in assets:
        writes.append(fx_write(day))
    if catalog.INGEST_QUALITY in assets:
        version = ledger_lake_version(conn, catalog.INGEST_QUALITY, day)
        writes.append(quality_write(lake_dir, day, version=version))
    return writes_skipped + [compare_with_serving(conn, write) for write in writes]


def recompute_and_compare_days(
    lake_dir: LakeRef,
    database_url: str,
    assets: Collection[str],
    days: Sequence[dt.date],
    reporting_currency: str,
    workers: int = 2,
) -> list[RecomputeResult]:
    """`recompute_and_compare` for each of `days`, `workers` days at a time (each on its own connection);
    results in the order of `days`.

    Each day is checked inside one read-only REPEATABLE READ transaction: the ledger versions, FX rates and
    serving rows it compares are all as of its start, so live runs committing while the recompute runs
    (every few seconds, for today) do not make the day incomparable. On a big day that snapshot is held
    for the minutes the recompute takes (vacuum waits for it; nothing else does)."""

    def in_one_snapshot(conn: psycopg.Connection, day: dt.date) -> list[RecomputeResult]:
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        conn.read_only = True
        with conn.transaction():
            return recompute_and_compare(lake_dir, conn, assets, day, reporting_currency)

    return _on_own_connections(database_url, in_one_snapshot, days, workers)


def sample_days(days: Sequence[dt.date], size: int, seed: str) -> list[dt.date]:
    """Up to `size` of `days`: always the newest, the others picked by a hash of `seed` (e.g. the run id),
    so a run's sample is reproducible and different runs look at different days."""
    ordered = sorted(set(days))
    if len(ordered) <= size:
        return ordered
    chosen = [ordered[-1]]
    rest = ordered[:-1]
    rank: Callable[[dt.date], bytes] = lambda d: hashlib.sha256(f"{seed}:{d}".encode()).digest()  # noqa: E731
    chosen += sorted(rest, key=rank)[: size - 1]
    return sorted(chosen)
