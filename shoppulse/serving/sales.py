"""Sales: time series, daily totals, breakdowns and top products, in any time zone and currency."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from shoppulse.contract.events import CURRENCY_EXPONENTS
from shoppulse.metrics import round_minor
from shoppulse.serving.aggregate import Grouping, Ranking, aggregate, zero_sums
from shoppulse.serving.ledger import Freshness, read_freshness
from shoppulse.serving.metrics import ITEM_MEASURES, MONEY_MEASURES, SALES_MEASURES, aov, ratio
from shoppulse.serving.results import Meta, QueryContext, QueryResult, Scope
from shoppulse.serving.tables import PRODUCT_TABLES, Piece, Table, choose_table, plan_pieces, sales_family
from shoppulse.serving.timeframe import Granularity, Window, buckets

BREAKDOWN_DIMENSIONS = ("country", "channel", "device", "category", "currency")
"""Dimensions a breakdown may group by (`currency` = the sale's native currency)."""


@dataclass(frozen=True)
class SalesFilters:
    """Optional equality filters; `native_currency` keeps only sales made in that currency."""

    category: str | None = None
    country: str | None = None
    channel: str | None = None
    device: str | None = None
    native_currency: str | None = None

    def columns(self) -> dict[str, str]:
        """Filter column -> value, for the columns that are set."""
        columns = {
            name: value
            for name, value in (
                ("category", self.category),
                ("country", self.country),
                ("channel", self.channel),
                ("device", self.device),
            )
            if value is not None
        }
        if self.native_currency is not None:
            columns["currency"] = self.native_currency
        return columns


def money_values(sums: Mapping[str, Any], measures: Sequence[str]) -> dict[str, int | None]:
    """Every sales measure, rounded once; order-level ones are None when the table lacks them."""
    values: dict[str, int | None] = {}
    for measure in SALES_MEASURES:
        if measure not in measures:
            values[measure] = None
        elif measure in MONEY_MEASURES:
            values[measure] = round_minor(sums[measure])
        else:
            values[measure] = int(sums[measure])
    average = aov(sums)
    values["aov"] = None if average is None else round_minor(average)
    return values


def _meta(window: Window, currency: str, freshness: Freshness) -> Meta:
    return Meta(
        as_of=freshness.as_of,
        watermark=freshness.watermark,
        complete=freshness.complete,
        tz=window.tz,
        currency=currency,
        currency_exponent=CURRENCY_EXPONENTS[currency],
    )


async def _result(
    ctx: QueryContext, data: Any, windows: Sequence[Window], table: Table, currency: str, *also_read: Table
) -> QueryResult:
    assets = dict.fromkeys(t.asset for t in (table, *also_read))
    scopes = tuple(Scope(asset, *window.utc_dates) for asset in assets for window in windows)
    freshness = await read_freshness(ctx.conn, scopes, now=ctx.now, horizon=ctx.lateness_horizon)
    return QueryResult(
        data=data,
        meta=_meta(windows[0], currency, freshness),
        dependencies=(*scopes, Scope("fx_rates")),
        valid_until=freshness.changes_at,
    )


@dataclass(frozen=True)
class _Series:
    points: list[dict[str, Any]]
    totals: dict[str, Any]
    exact_totals: dict[str, Decimal | int]
    table: Table


async def _series(
    ctx: QueryContext, window: Window, granularity: Granularity, currency: str, filters: SalesFilters
) -> _Series:
    columns = filters.columns()
    family = sales_family(columns)
    periods = buckets(window, granularity)
    boundaries = [period.start for period in periods] + [window.end]
    table = choose_table(family, columns, boundaries)
    fx = (await ctx.fx.table(ctx.conn)).factors(currency, *window.utc_dates)
    rows = await aggregate(
        ctx.conn, [Piece(table, window.start, window.end)], table.measures, Grouping.buckets(boundaries), columns, fx
    )
    by_bucket = {row["g"]: row for row in rows}
    zone = window.zone
    points = []
    totals: dict[str, Decimal | int] = zero_sums(table.measures)
    for index, period in enumerate(periods, start=1):
        sums = by_bucket.get(index) or zero_sums(table.measures)
        for measure in table.measures:
            totals[measure] += sums[measure]
        points.append(
            {
                "bucket": period.label,
                "start": period.start.astimezone(zone),
                "end": period.end.astimezone(zone),
                **money_values(sums, table.measures),
            }
        )
    return _Series(points, money_values(totals, table.measures), totals, table)


def _change(current: Mapping[str, Any], previous: Mapping[str, Any], measures: Sequence[str]) -> dict[str, Any]:
    """Relative change per measure, (current − previous) / previous; None when previous is 0."""
    change: dict[str, float | None] = {measure: None for measure in SALES_MEASURES}
    for measure in measures:
        change[measure] = ratio(Decimal(current[measure]) - Decimal(previous[measure]), Decimal(previous[measure]))
    current_aov, previous_aov = aov(current), aov(previous)
    change["aov"] = (
        None if current_aov is None or previous_aov is None else ratio(current_aov - previous_aov, previous_aov)
    )
    return change


async def sales_timeseries(
    ctx: QueryContext,
    window: Window,
    granularity: Granularity,
    currency: str,
    filters: SalesFilters,
    compare: bool = False,
) -> QueryResult:
    """Sales per local hour/day/ISO week/month of the window, every bucket listed (zeros when empty)."""
    current = await _series(ctx, window, granularity, currency, filters)
    data: dict[str, Any] = {
        "granularity": granularity.value,
        "from": window.first,
        "to": window.last,
        "series": current.points,
        "totals": current.totals,
        "previous": None,
        "change": None,
    }
    windows = [window]
    if compare:
        before = window.previous()
        previous = await _series(ctx, before, granularity, currency, filters)
        windows.append(before)
        data["previous"] = {
            "from": before.first,
            "to": before.last,
            "series": previous.points,
            "totals": previous.totals,
        }
        data["change"] = _change(current.exact_totals, previous.exact_totals, current.table.measures)
    return await _result(ctx, data, windows, current.table, currency)


async def sales_daily(ctx: QueryContext, window: Window, currency: str) -> QueryResult:
    """Sales per local day of the window: the day granularity of `sales_timeseries`, unfiltered."""
    result = await sales_timeseries(ctx, window, Granularity.DAY, currency, SalesFilters())
    series = result.data
    days = [
        {"date": point["bucket"], **{k: v for k, v in point.items() if k != "bucket"}} for point in series["series"]
    ]
    data = {"from": series["from"], "to": series["to"], "days": days, "totals": series["totals"]}
    return QueryResult(data, result.meta, result.dependencies, result.valid_until)


async def sales_breakdown(
    ctx: QueryContext, window: Window, dimension: str, currency: str, filters: SalesFilters
) -> QueryResult:
    """Sales over the whole window per value of a dimension, by net sales descending, ties by value."""
    if dimension not in BREAKDOWN_DIMENSIONS:
        raise ValueError(f"unknown dimension {dimension!r}")
    columns = filters.columns()
    family = sales_family([*columns, dimension])
    pieces = plan_pieces(family, [*columns, dimension], window.start, window.end)
    table = pieces[0].table
    fx = (await ctx.fx.table(ctx.conn)).factors(currency, *window.utc_dates)
    rows = await aggregate(ctx.conn, pieces, table.measures, Grouping.by(dimension), columns, fx)
    rows.sort(key=lambda row: (-round_minor(row["net_sales"]), row["g"]))  # as output, ties by value
    items = [{"value": row["g"], **money_values(row, table.measures)} for row in rows]
    if dimension == "category" and "category" not in columns:
        # An order with lines in three categories is in three rows: the totals come from the order-level
        # tables instead, so each order counts once (they equal the window's sales/timeseries totals).
        orders = await _series(ctx, window, Granularity.DAY, currency, filters)
        totals, also_read = orders.totals, (orders.table,)
    else:
        sums: dict[str, Decimal | int] = zero_sums(table.measures)
        for row in rows:
            for measure in table.measures:
                sums[measure] += row[measure]
        totals, also_read = money_values(sums, table.measures), ()
    data = {"dimension": dimension, "from": window.first, "to": window.last, "items": items, "totals": totals}
    return await _result(ctx, data, [window], table, currency, *also_read)


async def top_products(
    ctx: QueryContext,
    window: Window,
    metric: str,
    currency: str,
    limit: int,
    offset: int,
    filters: SalesFilters,
) -> QueryResult:
    """Products ranked by `metric` over the window (exact converted value), ties by product_id."""
    columns = filters.columns()
    if set(columns) - {"category", "currency"}:
        raise ValueError("top products can be filtered by category and native currency only")
    pieces = plan_pieces(PRODUCT_TABLES, [*columns, "product_id"], window.start, window.end)
    fx = (await ctx.fx.table(ctx.conn)).factors(currency, *window.utc_dates)
    rows = await aggregate(
        ctx.conn,
        pieces,
        ITEM_MEASURES,
        Grouping.by("product_id", carry=("category",)),
        columns,
        fx,
        Ranking(metric, limit, offset),
    )
    items = []
    for rank, row in enumerate(rows, start=offset + 1):
        values = money_values(row, ITEM_MEASURES)
        items.append(
            {
                "rank": rank,
                "product_id": row["g"],
                "category": row["category"],
                **{measure: values[measure] for measure in ITEM_MEASURES},
            }
        )
    total = rows[0]["total_groups"] if rows else await _count_products(ctx, pieces, columns, fx)
    data = {
        "metric": metric,
        "from": window.first,
        "to": window.last,
        "limit": limit,
        "offset": offset,
        "total_products": total,
        "items": items,
    }
    return await _result(ctx, data, [window], pieces[0].table, currency)


async def _count_products(ctx: QueryContext, pieces: Sequence[Piece], columns: Mapping[str, str], fx: Any) -> int:
    """Number of ranked products when the requested page is past the end (offset >= total)."""
    rows = await aggregate(
        ctx.conn, pieces, ("orders",), Grouping.by("product_id"), columns, fx, Ranking("orders", 1, 0)
    )
    return int(rows[0]["total_groups"]) if rows else 0
