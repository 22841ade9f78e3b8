"""One parameterized SQL shape for every money query: sum natively, convert, group, optionally rank.

    WITH native AS (            -- per slice of the window, from the cheapest table that answers it
        SELECT <group> AS g, event_date, currency, sum(<measure>) ... GROUP BY g, event_date, currency
        UNION ALL ...
    ), fx(day, currency, factor) AS (SELECT * FROM unnest(<days>, <currencies>, <factors>))
    SELECT g, sum(<count>), sum(<money> * fx.factor) ... FROM native LEFT JOIN fx ... GROUP BY g

Native sums are exact integers; conversion multiplies each (UTC day, currency) sum once, so the
result per group is an exact numeric the caller rounds half-to-even (see `currency.py`).
Identifiers come from `tables.py`; every value is a bound parameter.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from psycopg import sql
from psycopg.rows import dict_row

from shoppulse.serving.currency import HALF_EVEN_SQL, FxFactors
from shoppulse.serving.metrics import MONEY_MEASURES
from shoppulse.serving.tables import Piece

GROUP = "g"


@dataclass(frozen=True)
class Grouping:
    """Output rows: one per bucket (1-based index into `boundaries`), per column value, or one total."""

    column: str | None = None
    carry: tuple[str, ...] = ()
    """Columns functionally dependent on `column`, carried along with min() (a product's category)."""
    boundaries: tuple[datetime, ...] = field(default=())
    """Sorted bucket boundaries b0 < b1 < ... < bn: rows in [b(i-1), b(i)) land in bucket i."""

    @classmethod
    def buckets(cls, boundaries: Sequence[datetime]) -> Grouping:
        return cls(boundaries=tuple(boundaries))

    @classmethod
    def by(cls, column: str, carry: tuple[str, ...] = ()) -> Grouping:
        return cls(column=column, carry=carry)


@dataclass(frozen=True)
class Ranking:
    """Order groups by a measure as it is output (money rounded to minor units), descending, ties by the
    group value (bytewise), and page them."""

    measure: str
    limit: int
    offset: int


async def aggregate(
    conn: Any,
    pieces: Sequence[Piece],
    measures: Sequence[str],
    grouping: Grouping,
    filters: Mapping[str, str],
    fx: FxFactors,
    ranking: Ranking | None = None,
) -> list[dict[str, Any]]:
    """Rows keyed `g` (bucket index, column value or 0) with summed measures (money as exact Decimal).

    With a ranking, rows also carry `total_groups`, the number of groups before paging.
    """
    query, params = build_query(pieces, measures, grouping, filters, fx, ranking)
    async with conn.cursor(row_factory=dict_row) as cursor:
        await cursor.execute(query, params)
        rows = await cursor.fetchall()
    if any(row["fx_missing"] for row in rows):
        raise fx.missing()
    for row in rows:
        del row["fx_missing"]
        for measure in measures:
            if measure not in MONEY_MEASURES:
                row[measure] = int(row[measure])
    return rows


def build_query(
    pieces: Sequence[Piece],
    measures: Sequence[str],
    grouping: Grouping,
    filters: Mapping[str, str],
    fx: FxFactors,
    ranking: Ranking | None = None,
) -> tuple[sql.Composable, dict[str, Any]]:
    """The SQL of `aggregate` and its parameters."""
    params: dict[str, Any] = {
        "fx_days": fx.days,
        "fx_currencies": fx.currencies,
        "fx_factors": fx.factors,
    }
    selects = [_piece_select(index, piece, measures, grouping, filters, params) for index, piece in enumerate(pieces)]
    carry = [sql.SQL("min(n.{col}) AS {col}").format(col=sql.Identifier(col)) for col in grouping.carry]
    outer = [_converted_sum(measure) for measure in measures]
    query: sql.Composable = sql.SQL(
        "WITH native AS ({union}),"
        " fx(day, currency, factor) AS ("
        "SELECT * FROM unnest(%(fx_days)s::date[], %(fx_currencies)s::text[], %(fx_factors)s::numeric[]))"
        " SELECT n.g, {columns}, bool_or(fx.factor IS NULL) AS fx_missing"
        " FROM native n LEFT JOIN fx ON fx.day = n.event_date AND fx.currency = n.currency"
        " GROUP BY n.g"
    ).format(union=sql.SQL(" UNION ALL ").join(selects), columns=sql.SQL(", ").join([*carry, *outer]))
    if ranking is not None:
        column = sql.Identifier("grouped", ranking.measure)
        key = sql.SQL(HALF_EVEN_SQL).format(value=column) if ranking.measure in MONEY_MEASURES else column
        query = sql.SQL(
            "SELECT grouped.*, count(*) OVER () AS total_groups FROM ({query}) AS grouped"
            ' ORDER BY {key} DESC, grouped.g COLLATE "C" LIMIT %(limit)s OFFSET %(offset)s'
        ).format(query=query, key=key)
        params["limit"] = ranking.limit
        params["offset"] = ranking.offset
    return query, params


def _converted_sum(measure: str) -> sql.Composable:
    column = sql.Identifier(measure)
    if measure in MONEY_MEASURES:
        return sql.SQL("sum(n.{col} * fx.factor) AS {col}").format(col=column)
    return sql.SQL("sum(n.{col}) AS {col}").format(col=column)


def _piece_select(
    index: int,
    piece: Piece,
    measures: Sequence[str],
    grouping: Grouping,
    filters: Mapping[str, str],
    params: dict[str, Any],
) -> sql.Composable:
    table = piece.table
    prefix = f"p{index}_"
    first_date, last_date = piece.dates
    params[prefix + "d0"] = first_date
    params[prefix + "d1"] = last_date
    conditions: list[sql.Composable] = [
        sql.SQL("event_date BETWEEN {d0} AND {d1}").format(
            d0=sql.Placeholder(prefix + "d0"), d1=sql.Placeholder(prefix + "d1")
        )
    ]
    if table.time_column is not None:
        params[prefix + "t0"] = piece.start
        params[prefix + "t1"] = piece.end
        conditions.append(
            sql.SQL("{col} >= {t0} AND {col} < {t1}").format(
                col=sql.Identifier(table.time_column),
                t0=sql.Placeholder(prefix + "t0"),
                t1=sql.Placeholder(prefix + "t1"),
            )
        )
    for column, value in sorted(filters.items()):
        if column not in table.dimensions:
            raise ValueError(f"{table.name} has no column {column!r}")  # planning guarantees it does
        params[prefix + "f_" + column] = value
        conditions.append(
            sql.SQL("{col} = {value}").format(col=sql.Identifier(column), value=sql.Placeholder(prefix + "f_" + column))
        )
    group = _group_expression(prefix, table.time_column, grouping, params)
    carry = [sql.SQL("min({col}) AS {col}").format(col=sql.Identifier(col)) for col in grouping.carry]
    # bigint partial sums keep the outer sums on the int128 fast path (money stays far below 2^63 minor units)
    sums = [sql.SQL("sum({col})::bigint AS {col}").format(col=sql.Identifier(measure)) for measure in measures]
    return sql.SQL(
        "SELECT {group} AS g, {columns}, event_date, currency::text AS currency"
        " FROM analytics.{table} WHERE {conditions} GROUP BY 1, event_date, currency"
    ).format(
        group=group,
        columns=sql.SQL(", ").join([*carry, *sums]),
        table=sql.Identifier(table.name),
        conditions=sql.SQL(" AND ").join(conditions),
    )


def _group_expression(
    prefix: str, time_column: str | None, grouping: Grouping, params: dict[str, Any]
) -> sql.Composable:
    if grouping.column is not None:
        return sql.Identifier(grouping.column)
    if not grouping.boundaries:
        return sql.SQL("0")
    if time_column is None:
        params[prefix + "bounds"] = [boundary.date() for boundary in grouping.boundaries]
        return sql.SQL("width_bucket(event_date, {bounds}::date[])").format(bounds=sql.Placeholder(prefix + "bounds"))
    params[prefix + "bounds"] = list(grouping.boundaries)
    return sql.SQL("width_bucket({col}, {bounds}::timestamptz[])").format(
        col=sql.Identifier(time_column), bounds=sql.Placeholder(prefix + "bounds")
    )


def zero_sums(measures: Sequence[str]) -> dict[str, int | Decimal]:
    """Sums of an empty bucket (gap-filling)."""
    return dict.fromkeys(measures, 0)
