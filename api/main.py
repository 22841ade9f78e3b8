"""ASGI entry point: `uvicorn api.main:app`. `create_app(settings)` builds an app for tests and tools."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import psycopg
from fastapi import FastAPI, Request, Security
from fastapi.exceptions import RequestValidationError
from fastapi.security import APIKeyHeader
from psycopg_pool import PoolTimeout
from starlette.responses import Response

from api.edge import EdgeMiddleware
from api.live import live_router
from api.pages import install_pages
from api.render import json_response
from api.routes import ANALYTICS_RESPONSES, AUTH_RESPONSES, CACHEABLE_PATHS, analytics_router, health_router
from api.state import Clock, ServingState, utc_now
from shoppulse.serving.errors import DataUnavailableError, InvalidParameterError
from shoppulse.serving.guard import API_KEY_HEADER
from shoppulse.settings import Settings, get_settings

log = logging.getLogger(__name__)

DESCRIPTION = """
Real-time e-commerce analytics served from PostgreSQL serving tables (never from the lake).

* Every answer: `{"data": ..., "meta": {"as_of", "watermark", "complete", "tz", "currency", "currency_exponent"}}`.
* Money: integer minor units of `meta.currency` (÷ 10^`meta.currency_exponent` for major units).
* `from`/`to`: inclusive calendar dates, local in `tz` for sales and products, UTC for users, funnel and customers.
* Caching: strong `ETag` (send `If-None-Match` for a `304`) and `Cache-Control`.
* Errors: `422` names the parameter in `detail[].loc`; `401`/`403` API key; `429` with `Retry-After`;
  `503` when PostgreSQL cannot answer.

See docs/api.md for the semantics (time zones, DST, currency conversion, completeness).
"""

TAGS = [
    {"name": "sales", "description": "Sales totals, time series, breakdowns and top products."},
    {"name": "users", "description": "Active users (sliding minute windows) and DAU/WAU/MAU."},
    {"name": "funnel", "description": "Session funnel and cart abandonment."},
    {"name": "customers", "description": "First-time and returning customers."},
    {"name": "operations", "description": "Liveness, freshness, metrics."},
]


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    state: ServingState = app.state.serving
    await state.pool.open(wait=False)
    state.listener.start()
    try:
        yield
    finally:
        await state.listener.stop()
        await state.pool.close()


def unavailable(detail: str) -> Response:
    return json_response({"detail": detail}, 503, {"Retry-After": "5"})


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(InvalidParameterError)
    async def invalid_parameter(_: Request, exc: InvalidParameterError) -> Response:
        detail = [{"type": "value_error", "loc": ["query", exc.parameter], "msg": exc.message}]
        return json_response({"detail": detail}, 422)

    @app.exception_handler(DataUnavailableError)
    async def data_unavailable(_: Request, exc: DataUnavailableError) -> Response:
        return unavailable(str(exc))

    @app.exception_handler(PoolTimeout)
    async def pool_timeout(_: Request, exc: PoolTimeout) -> Response:
        return unavailable("no database connection became free in time; retry shortly")

    @app.exception_handler(psycopg.errors.UndefinedTable)
    async def undefined_table(_: Request, exc: psycopg.Error) -> Response:
        return unavailable("the serving tables do not exist yet (migrations not applied)")

    @app.exception_handler(psycopg.errors.QueryCanceled)
    async def query_canceled(_: Request, exc: psycopg.Error) -> Response:
        return unavailable("the query exceeded the statement timeout; narrow the window or retry")

    @app.exception_handler(psycopg.OperationalError)
    async def database_down(_: Request, exc: psycopg.Error) -> Response:
        log.warning("database unavailable: %s", exc)
        return unavailable("the database is unavailable; retry shortly")

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, exc: RequestValidationError) -> Response:
        errors = [{key: error[key] for key in ("type", "loc", "msg") if key in error} for error in exc.errors()]
        return json_response({"detail": errors}, 422)


def create_app(settings: Settings | None = None, *, now: Clock = utc_now) -> FastAPI:
    """The API over `settings.database_url`; `now` is injectable for tests."""
    settings = settings or get_settings()
    state = ServingState.create(settings, now)
    app = FastAPI(
        title="ShopPulse API",
        version="1.0.0",
        description=DESCRIPTION,
        openapi_tags=TAGS,
        lifespan=lifespan,
        docs_url=None,  # /docs is served from vendored files (api/pages.py), not a CDN
        redoc_url=None,
        # FastAPI's native OpenTelemetry instrumentation costs ~10 µs per request even without a provider;
        # this service exports Prometheus metrics (api/telemetry.py) instead.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.serving = state
    dependencies: list[Any] = []
    if state.guard.auth_enabled:
        scheme = APIKeyHeader(
            name=API_KEY_HEADER,
            auto_error=False,
            description="API key; required when the server has keys configured (SHOPPULSE_API_KEYS).",
        )
        dependencies.append(Security(scheme))  # documents the scheme; the edge middleware enforces it
    app.include_router(health_router(state.guard.auth_enabled, dependencies))
    app.include_router(analytics_router(state.guard.auth_enabled, dependencies))
    app.include_router(live_router(state.guard.auth_enabled, dependencies, {**ANALYTICS_RESPONSES, **AUTH_RESPONSES}))
    install_pages(app)
    install_error_handlers(app)
    app.add_middleware(EdgeMiddleware, serving=state, query_names=query_names(app), cacheable=CACHEABLE_PATHS)
    return app


def query_names(app: FastAPI) -> dict[str, frozenset[str]]:
    """Path -> the query parameters its GET operation declares (from the OpenAPI document)."""
    names: dict[str, frozenset[str]] = {}
    for path, item in app.openapi()["paths"].items():
        parameters = item.get("get", {}).get("parameters", [])
        names[path] = frozenset(parameter["name"] for parameter in parameters if parameter["in"] == "query")
    for path in (app.docs_url, app.redoc_url, app.openapi_url, "/docs/oauth2-redirect"):
        if path:
            names.setdefault(path, frozenset())
    return names


app = create_app()
