"""Routes: HTTP parameters in, a query function of `shoppulse.serving` called, its answer out.

Every analytics answer is `{"data": ..., "meta": {as_of, watermark, complete, tz, currency, ...}}`
with a strong ETag (304 on If-None-Match) and Cache-Control.
"""

from __future__ import annotations

from typing import Any

import orjson
import psycopg
from fastapi import APIRouter, Request
from prometheus_client.exposition import choose_encoder
from psycopg_pool import PoolTimeout
from starlette.responses import Response

from api import params, schemas
from api.answer import answer, serving
from api.edge import HEALTH_BODY
from shoppulse.serving import alerts, audience, health, sales
from shoppulse.serving.audience import MAX_ACTIVE_MINUTES
from shoppulse.serving.results import QueryContext
from shoppulse.serving.sales import SalesFilters
from shoppulse.serving.timeframe import MAX_DAYS, MAX_RANGE_DAYS, Granularity, resolve_window

CACHEABLE_PATHS = frozenset(
    {
        "/analytics/sales/daily",
        "/analytics/sales/top-products",
        "/analytics/sales/timeseries",
        "/analytics/sales/breakdown",
        "/analytics/products/top",
        "/analytics/users/active",
        "/analytics/users/active/timeseries",
        "/analytics/users/daily",
        "/analytics/funnel",
        "/analytics/carts/abandonment",
        "/analytics/customers/returning",
    }
)
"""Routes whose answers the edge middleware may serve from memory."""

_HEADERS_200 = {
    "ETag": {
        "description": "Strong validator of the body; send it back in If-None-Match.",
        "schema": {"type": "string"},
    },
    "Cache-Control": {
        "description": "`max-age=300` once the answer is complete, `max-age=5` while it still changes.",
        "schema": {"type": "string"},
    },
    "X-Cache": {"description": "`hit` when served from memory, `miss` when computed.", "schema": {"type": "string"}},
}
ANALYTICS_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"headers": _HEADERS_200},
    304: {"description": "Not modified: If-None-Match matches the current ETag (no body)."},
    429: {
        "model": schemas.Error,
        "description": "Rate limit exceeded.",
        "headers": {"Retry-After": {"description": "Seconds to wait.", "schema": {"type": "integer"}}},
    },
    503: {
        "model": schemas.Error,
        "description": "PostgreSQL unavailable or too slow, serving tables missing, or an FX rate missing.",
        "headers": {"Retry-After": {"description": "Seconds to wait.", "schema": {"type": "integer"}}},
    },
}
AUTH_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"model": schemas.Error, "description": "Missing API key (X-API-Key header)."},
    403: {"model": schemas.Error, "description": "Unknown API key."},
}


def analytics_router(auth: bool, dependencies: list[Any]) -> APIRouter:
    """The analytics routes; `auth` documents 401/403 (enforced by the edge middleware)."""
    responses = {**ANALYTICS_RESPONSES, **(AUTH_RESPONSES if auth else {})}
    router = APIRouter(prefix="/analytics", responses=responses, dependencies=dependencies)

    def currency_or_default(request: Request, currency: str | None) -> str:
        return currency or serving(request).settings.reporting_currency

    @router.get(
        "/sales/daily",
        response_model=schemas.SalesDailyResponse,
        tags=["sales"],
        summary="Sales per local day (default: today)",
        description="Totals per local calendar day in `tz`: the `day` granularity of `/analytics/sales/timeseries` "
        "without filters. Money in minor units of `meta.currency`.",
    )
    async def sales_daily(
        request: Request,
        from_: params.FromToday = None,
        to: params.ToToday = None,
        tz: params.Tz = "UTC",
        currency: params.TargetCurrency = None,
    ) -> Response:
        now = serving(request).now()
        resolved = resolve_window(now, from_, to, tz, max_days=MAX_RANGE_DAYS, default_days=1)
        target = currency_or_default(request, currency)
        return await answer(
            request,
            schemas.SalesDailyResponse,
            lambda ctx: sales.sales_daily(ctx, resolved.window, target),
            now=now,
            expires=resolved.expires,
        )

    @router.get(
        "/sales/timeseries",
        response_model=schemas.SalesTimeseriesResponse,
        tags=["sales"],
        summary="Sales over time, gap-filled, in any time zone and currency",
        description="Every local hour/day/ISO week/month bucket of the window (zeros when empty), totals, "
        "and optionally the previous period and the change of the totals.",
    )
    async def sales_timeseries(
        request: Request,
        granularity: params.GranularityParam = Granularity.DAY,
        from_: params.From = None,
        to: params.To = None,
        tz: params.Tz = "UTC",
        currency: params.TargetCurrency = None,
        category: params.Category = None,
        country: params.Country = None,
        channel: params.ChannelFilter = None,
        device: params.DeviceFilter = None,
        native_currency: params.NativeCurrency = None,
        compare: params.Compare = None,
    ) -> Response:
        now = serving(request).now()
        resolved = resolve_window(now, from_, to, tz, max_days=MAX_DAYS[granularity], default_days=7)
        filters = SalesFilters(category, country, channel, device, native_currency)
        target = currency_or_default(request, currency)
        return await answer(
            request,
            schemas.SalesTimeseriesResponse,
            lambda ctx: sales.sales_timeseries(ctx, resolved.window, granularity, target, filters, compare is not None),
            now=now,
            expires=resolved.expires,
        )

    @router.get(
        "/sales/breakdown",
        response_model=schemas.SalesBreakdownResponse,
        tags=["sales"],
        summary="Sales by country, channel, device, category or native currency",
        description="Totals over the window per value of `dimension`, by net sales descending (ties by value).",
    )
    async def sales_breakdown(
        request: Request,
        dimension: params.Dimension,
        from_: params.From = None,
        to: params.To = None,
        tz: params.Tz = "UTC",
        currency: params.TargetCurrency = None,
        category: params.Category = None,
        country: params.Country = None,
        channel: params.ChannelFilter = None,
        device: params.DeviceFilter = None,
        native_currency: params.NativeCurrency = None,
    ) -> Response:
        now = serving(request).now()
        resolved = resolve_window(now, from_, to, tz, max_days=MAX_RANGE_DAYS, default_days=7)
        filters = SalesFilters(category, country, channel, device, native_currency)
        target = currency_or_default(request, currency)
        return await answer(
            request,
            schemas.SalesBreakdownResponse,
            lambda ctx: sales.sales_breakdown(ctx, resolved.window, dimension, target, filters),
            now=now,
            expires=resolved.expires,
        )

    @router.get(
        "/sales/top-products",
        response_model=schemas.TopProductsResponse,
        tags=["sales"],
        summary="Best-selling products by net sales (default: today)",
        description="The `net_sales` ranking of `/analytics/products/top`, first page. Local days need a time zone "
        "whose UTC offset is a whole number of hours (product rollups are hourly).",
    )
    async def sales_top_products(
        request: Request,
        from_: params.FromToday = None,
        to: params.ToToday = None,
        tz: params.Tz = "UTC",
        currency: params.TargetCurrency = None,
        limit: params.Limit = 10,
    ) -> Response:
        now = serving(request).now()
        resolved = resolve_window(now, from_, to, tz, max_days=MAX_RANGE_DAYS, default_days=1)
        target = currency_or_default(request, currency)
        return await answer(
            request,
            schemas.TopProductsResponse,
            lambda ctx: sales.top_products(ctx, resolved.window, "net_sales", target, limit, 0, SalesFilters()),
            now=now,
            expires=resolved.expires,
        )

    @router.get(
        "/products/top",
        response_model=schemas.TopProductsResponse,
        tags=["sales"],
        summary="Top products by net sales, gross sales, units or orders",
        description="Products ranked by `metric` over the window (money ranked by its exact converted value), "
        "ties by product_id ascending (bytewise), paged by `limit`/`offset`.",
    )
    async def products_top(
        request: Request,
        metric: params.Metric = "net_sales",
        from_: params.From = None,
        to: params.To = None,
        tz: params.Tz = "UTC",
        currency: params.TargetCurrency = None,
        category: params.Category = None,
        native_currency: params.NativeCurrency = None,
        limit: params.Limit = 10,
        offset: params.Offset = 0,
    ) -> Response:
        now = serving(request).now()
        resolved = resolve_window(now, from_, to, tz, max_days=MAX_RANGE_DAYS, default_days=7)
        filters = SalesFilters(category=category, native_currency=native_currency)
        target = currency_or_default(request, currency)
        return await answer(
            request,
            schemas.TopProductsResponse,
            lambda ctx: sales.top_products(ctx, resolved.window, metric, target, limit, offset, filters),
            now=now,
            expires=resolved.expires,
        )

    @router.get(
        "/users/active",
        response_model=schemas.ActiveUsersResponse,
        tags=["users"],
        summary="Users on the site right now",
        description="Distinct users in the sliding window ending with the newest complete minute (the users "
        "rollup's watermark is past its end), plus all precomputed windows.",
    )
    async def users_active(request: Request, window: params.Window = params.ActiveWindow.FIVE) -> Response:
        now = serving(request).now()
        return await answer(
            request,
            schemas.ActiveUsersResponse,
            lambda ctx: audience.active_users_now(ctx, int(window)),
            now=now,
        )

    @router.get(
        "/users/active/timeseries",
        response_model=schemas.ActiveUsersSeriesResponse,
        tags=["users"],
        summary="Active users per minute over a sliding window",
        description="For each of the last `minutes` minutes up to the newest complete one, the distinct users in "
        "the `window` minutes ending with it (null for a minute without a row).",
    )
    async def users_active_timeseries(
        request: Request,
        window: params.Window = params.ActiveWindow.FIVE,
        minutes: params.Minutes = 60,
    ) -> Response:
        now = serving(request).now()
        return await answer(
            request,
            schemas.ActiveUsersSeriesResponse,
            lambda ctx: audience.active_users_series(ctx, int(window), min(minutes, MAX_ACTIVE_MINUTES)),
            now=now,
        )

    @router.get(
        "/users/daily",
        response_model=schemas.UsersDailyResponse,
        tags=["users"],
        summary="DAU, WAU, MAU, sessions and views per UTC day",
        description="Rolling distinct users are not additive. A materialized day without events has DAU 0 and "
        "its WAU/MAU (users of the trailing 7/30 days); a day whose users partition is not materialized is null.",
    )
    async def users_daily(request: Request, from_: params.FromUtc = None, to: params.ToUtc = None) -> Response:
        now = serving(request).now()
        resolved = resolve_window(now, from_, to, "UTC", max_days=MAX_RANGE_DAYS, default_days=7)
        return await answer(
            request,
            schemas.UsersDailyResponse,
            lambda ctx: audience.users_daily(ctx, resolved.window),
            now=now,
            expires=resolved.expires,
        )

    @router.get(
        "/funnel",
        response_model=schemas.FunnelResponse,
        tags=["funnel"],
        summary="Session funnel: view → cart → checkout → purchase",
        description="Sessions reaching each stage over the UTC days of the window, step and overall conversion.",
    )
    async def funnel(
        request: Request,
        from_: params.FromUtc = None,
        to: params.ToUtc = None,
        country: params.FunnelCountry = None,
        channel: params.FunnelChannel = None,
        device: params.FunnelDevice = None,
    ) -> Response:
        now = serving(request).now()
        resolved = resolve_window(now, from_, to, "UTC", max_days=MAX_RANGE_DAYS, default_days=7)
        filters = _present({"country": country, "channel": channel, "device": device})
        return await answer(
            request,
            schemas.FunnelResponse,
            lambda ctx: audience.funnel(ctx, resolved.window, filters),
            now=now,
            expires=resolved.expires,
        )

    @router.get(
        "/carts/abandonment",
        response_model=schemas.CartAbandonmentResponse,
        tags=["funnel"],
        summary="Cart abandonment rate per UTC day",
        description="1 − purchase_sessions / cart_sessions per day and over the window (ratio of sums).",
    )
    async def carts_abandonment(
        request: Request,
        from_: params.FromUtc = None,
        to: params.ToUtc = None,
        country: params.FunnelCountry = None,
        channel: params.FunnelChannel = None,
        device: params.FunnelDevice = None,
    ) -> Response:
        now = serving(request).now()
        resolved = resolve_window(now, from_, to, "UTC", max_days=MAX_RANGE_DAYS, default_days=7)
        filters = _present({"country": country, "channel": channel, "device": device})
        return await answer(
            request,
            schemas.CartAbandonmentResponse,
            lambda ctx: audience.cart_abandonment(ctx, resolved.window, filters),
            now=now,
            expires=resolved.expires,
        )

    @router.get(
        "/customers/returning",
        response_model=schemas.ReturningCustomersResponse,
        tags=["customers"],
        summary="First-time vs returning customers per UTC day",
        description="Returning customer rate = returning_customers / customers, per day and over the window "
        "(customer-days).",
    )
    async def customers_returning(request: Request, from_: params.FromUtc = None, to: params.ToUtc = None) -> Response:
        now = serving(request).now()
        resolved = resolve_window(now, from_, to, "UTC", max_days=MAX_RANGE_DAYS, default_days=7)
        return await answer(
            request,
            schemas.ReturningCustomersResponse,
            lambda ctx: audience.returning_customers(ctx, resolved.window),
            now=now,
            expires=resolved.expires,
        )

    @router.get(
        "/alerts",
        response_model=schemas.AlertsResponse,
        tags=["alerts"],
        summary="Anomalies on complete hours (default: the last 7 UTC days)",
        description="Alerts whose hour starts within the UTC days of the window, newest first: net sales, orders "
        "and sessions against the same hour-of-week of previous weeks, payment-failure and quarantine shares, a "
        "stalled pipeline (docs/alerts.md). Never cached (Cache-Control: no-cache).",
    )
    async def list_alerts(request: Request, from_: params.FromUtc = None, to: params.ToUtc = None) -> Response:
        now = serving(request).now()
        resolved = resolve_window(now, from_, to, "UTC", max_days=MAX_RANGE_DAYS, default_days=7)
        return await answer(
            request,
            schemas.AlertsResponse,
            lambda ctx: alerts.list_alerts(ctx, resolved.window),
            now=now,
            cacheable=False,
        )

    return router


def health_router(auth: bool, dependencies: list[Any]) -> APIRouter:
    router = APIRouter(tags=["operations"])

    @router.get(
        "/health",
        response_model=schemas.Health,
        summary="Liveness",
        description="Answers while the process serves requests; touches nothing else (no database). "
        "`GET /health` is answered by the edge middleware; this route documents it (and answers HEAD).",
    )
    async def health_check() -> Response:
        return Response(HEALTH_BODY, media_type="application/json", headers={"Cache-Control": "no-store"})

    freshness_responses = {
        **{code: ANALYTICS_RESPONSES[code] for code in (200, 304, 429, 503)},
        **(AUTH_RESPONSES if auth else {}),
    }

    @router.get(
        "/health/freshness",
        response_model=schemas.FreshnessResponse,
        responses=freshness_responses,
        dependencies=dependencies,
        summary="Freshness of every asset, Kafka lag measured at the broker, stalls",
        description="Per asset: newest partition, last materialization, watermark and their ages; per Kafka "
        "partition: the lake's next offset, the broker's high watermark (read now, not from the drain), lag; "
        "whether ingestion or rollups are stalled and the readiness verdict with its reasons. "
        "Never cached (Cache-Control: no-cache).",
    )
    async def health_freshness(request: Request) -> Response:
        state = serving(request)

        async def report(ctx: Any) -> Any:
            result = await health.freshness(ctx, state.monitor)
            result.data["notify_listener_connected"] = state.listener.connected
            return result

        return await answer(request, schemas.FreshnessResponse, report, now=state.now(), cacheable=False)

    @router.get(
        "/health/ready",
        response_model=schemas.Readiness,
        responses={503: {"model": schemas.Readiness, "description": "Degraded: the reasons say what is stalled."}},
        summary="Readiness (for load balancers)",
        description="200 `ready`, or 503 `degraded` with the reasons while ingestion is stalled (Kafka holds "
        "messages and the lake has not moved for SHOPPULSE_HEALTH_INGEST_STALL_SECONDS), rollups are stalled "
        "(SHOPPULSE_HEALTH_ROLLUP_STALL_SECONDS), the broker's lag cannot be measured or PostgreSQL is down. "
        "Needs no API key and is not rate limited; the verdict is cached for 1 s per process.",
    )
    async def health_ready(request: Request) -> Response:
        state = serving(request)
        try:
            async with state.pool.connection() as conn:
                reasons = await health.readiness(
                    QueryContext(conn, state.now(), state.lateness_horizon, state.fx), state.monitor
                )
        except (psycopg.Error, PoolTimeout) as exc:
            reasons = [f"database unavailable: {type(exc).__name__}"]
        body = {"status": "degraded" if reasons else "ready", "reasons": reasons}
        headers = {"Cache-Control": "no-store", **({"Retry-After": "5"} if reasons else {})}
        return Response(orjson.dumps(body), 503 if reasons else 200, headers, media_type="application/json")

    @router.get(
        "/metrics",
        summary="Prometheus metrics",
        description="Request counts and latencies per route, cache hits/misses/entries, NOTIFY listener state, "
        "connection pool size (Prometheus text format).",
        responses={
            200: {
                "content": {
                    "text/plain": {"schema": {"type": "string"}},
                    "application/openmetrics-text": {"schema": {"type": "string"}},
                },
                "description": "Metrics in the format the Accept header asks for (Prometheus text by default).",
            }
        },
        response_class=Response,
    )
    async def metrics(request: Request) -> Response:
        encode, content_type = choose_encoder(request.headers.get("accept", ""))
        return Response(encode(serving(request).telemetry.registry), headers={"Content-Type": content_type})

    return router


def _present(values: dict[str, str | None]) -> dict[str, str]:
    return {name: value for name, value in values.items() if value is not None}
