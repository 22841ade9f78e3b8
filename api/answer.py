"""The miss path: run a query function, validate its answer against the response model, render, cache."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import asdict
from datetime import datetime

from fastapi import Request
from pydantic import BaseModel
from starlette.responses import Response

from api.edge import CACHE_KEY
from api.render import build_entry, to_response
from api.state import ServingState
from shoppulse.serving.results import QueryContext, QueryResult

Query = Callable[[QueryContext], Awaitable[QueryResult]]


def serving(request: Request) -> ServingState:
    return request.app.state.serving


async def answer(
    request: Request,
    model: type[BaseModel],
    query: Query,
    *,
    now: datetime,
    expires: datetime | None = None,
    cacheable: bool = True,
) -> Response:
    """Answer from PostgreSQL and keep the rendered bytes for the next identical request."""
    state = serving(request)
    generation = state.cache.generation
    async with state.pool.connection() as conn:
        result = await query(QueryContext(conn, now, state.lateness_horizon, state.fx))
    body = model.model_validate({"data": result.data, "meta": asdict(result.meta)}).model_dump_json().encode()
    changes = [instant for instant in (result.valid_until, expires) if instant is not None]
    until_change = (min(changes) - now).total_seconds() if changes else None
    entry = build_entry(
        body,
        complete=result.meta.complete,
        private=state.guard.auth_enabled,
        dependencies=result.dependencies,
        expires_at=state.cache.expiry(state.cache_ttl(), until_change),
        cache_control=None if cacheable else b"no-cache",
    )
    key = request.scope.get(CACHE_KEY)
    if cacheable and key is not None:
        state.cache.put(key, entry, generation)
    return to_response(entry, request.headers.get("if-none-match", "").encode("latin-1") or None)
