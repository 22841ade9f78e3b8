"""Catalog of the serving tables a query may read, and which one answers a window most cheaply.

Every identifier that reaches SQL comes from this module's allow-lists (table and column names are
constants here); request values only ever travel as bound parameters.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from shoppulse.serving.errors import InvalidParameterError
from shoppulse.serving.metrics import ITEM_MEASURES, SALES_MEASURES
from shoppulse.serving.timeframe import utc_day_start

DAY_SECONDS = 86_400


@dataclass(frozen=True)
class Table:
    """A rollup table: its grain, the time column at that grain and the dimensions it keeps."""

    name: str
    asset: str
    grain_seconds: int
    time_column: str | None  # None: the table is daily, `event_date` is its only time column
    dimensions: frozenset[str]
    measures: tuple[str, ...]

    def aligned(self, instants: Iterable[datetime]) -> bool:
        """Whether every instant is a boundary of this table's grain (so buckets never split a row)."""
        return all(int(instant.timestamp()) % self.grain_seconds == 0 for instant in instants)


SALES_DIMENSIONS = frozenset({"currency", "country", "channel", "device"})
ITEM_DIMENSIONS = frozenset({"currency", "category", "country", "channel", "device"})

SALES_TABLES = (
    Table("sales_daily", "sales", DAY_SECONDS, None, frozenset({"currency"}), SALES_MEASURES),
    Table("sales_hourly", "sales", 3600, "hour_start", frozenset({"currency"}), SALES_MEASURES),
    Table("sales_15m", "sales", 900, "bucket_start", SALES_DIMENSIONS, SALES_MEASURES),
)
CATEGORY_TABLES = (
    Table("category_sales_daily", "products", DAY_SECONDS, None, frozenset({"currency", "category"}), ITEM_MEASURES),
    Table("category_sales_15m", "products", 900, "bucket_start", ITEM_DIMENSIONS, ITEM_MEASURES),
)
PRODUCT_TABLES = (
    Table(
        "product_sales_daily",
        "products",
        DAY_SECONDS,
        None,
        frozenset({"currency", "category", "product_id"}),
        ITEM_MEASURES,
    ),
    Table(
        "product_sales_hourly",
        "products",
        3600,
        "hour_start",
        frozenset({"currency", "category", "product_id"}),
        ITEM_MEASURES,
    ),
)


def sales_family(dimensions: Iterable[str]) -> tuple[Table, ...]:
    """Order-level tables, or the category tables when a category is involved (filter or breakdown)."""
    return CATEGORY_TABLES if "category" in set(dimensions) else SALES_TABLES


def choose_table(family: Sequence[Table], dimensions: Iterable[str], boundaries: Sequence[datetime]) -> Table:
    """The coarsest table that has the dimensions and whose grain divides every bucket boundary."""
    needed = set(dimensions)
    for table in family:  # families are ordered coarse to fine
        if needed <= table.dimensions and table.aligned(boundaries):
            return table
    raise InvalidParameterError("tz", _unaligned_message(family))


@dataclass(frozen=True)
class Piece:
    """A slice [start, end) of a window answered by one table (daily slices are whole UTC days)."""

    table: Table
    start: datetime
    end: datetime

    @property
    def dates(self) -> tuple[date, date]:
        """First and last UTC date (partition) the slice reads."""
        return self.start.date(), (self.end - timedelta(microseconds=1)).date()


def plan_pieces(family: Sequence[Table], dimensions: Iterable[str], start: datetime, end: datetime) -> list[Piece]:
    """Cover [start, end) with as few rows as possible: whole UTC days from a daily table, edges finer."""
    needed = set(dimensions)
    candidates = [table for table in family if needed <= table.dimensions]
    if not candidates:
        raise InvalidParameterError("dimension", "no serving table keeps this combination of breakdown and filters")
    pieces: list[Piece] = []
    edges = [(start, end)]
    daily = candidates[0] if candidates[0].time_column is None else None
    if daily is not None:
        first_day = start.date() if start == utc_day_start(start.date()) else start.date() + timedelta(days=1)
        first_full, last_full = utc_day_start(first_day), utc_day_start(end.date())
        if first_full < last_full:
            pieces.append(Piece(daily, first_full, last_full))
            edges = [(start, first_full), (last_full, end)]
    for edge_start, edge_end in edges:
        if edge_start >= edge_end:
            continue
        table = next((t for t in candidates if t.time_column and t.aligned((edge_start, edge_end))), None)
        if table is None:
            raise InvalidParameterError("tz", _unaligned_message(family))
        pieces.append(Piece(table, edge_start, edge_end))
    return pieces


def _unaligned_message(family: Sequence[Table]) -> str:
    finest = min(table.grain_seconds for table in family) // 60
    return (
        f"this data is kept at {finest}-minute UTC grain, so local days in this time zone cannot be "
        f"answered exactly; use a time zone whose UTC offset is a multiple of {finest} minutes"
    )
