"""The outermost ASGI layer: API keys, rate limits, cached responses, request metrics.

A cache hit is answered here, before routing and parameter validation, from bytes rendered by the
request that missed: one dict lookup, no PostgreSQL round trip. The cache key is the path plus the
query parameters decoded exactly as Starlette decodes them, stably sorted by name (so repeated
parameters keep their order: the last value still wins).
"""

from __future__ import annotations

import time
from urllib.parse import parse_qsl

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.render import not_modified, not_modified_headers
from api.state import ServingState

CACHE_KEY = "shoppulse.cache_key"
"""Scope entry through which a miss tells the route where to store its rendered answer."""


def query_pairs(query_string: bytes) -> list[tuple[str, str]]:
    """Query parameters decoded exactly as Starlette decodes them."""
    return parse_qsl(query_string.decode("latin-1"), keep_blank_values=True)


def cache_key(path: str, pairs: list[tuple[str, str]]) -> bytes:
    return repr((path, sorted(pairs, key=lambda pair: pair[0]))).encode()


class EdgeMiddleware:
    """`query_names` maps each route to the query parameters it declares; others are rejected (422)."""

    def __init__(
        self,
        app: ASGIApp,
        serving: ServingState,
        query_names: dict[str, frozenset[str]],
        cacheable: frozenset[str],
    ) -> None:
        self.app = app
        self.serving = serving
        self.query_names = query_names
        self.cacheable = cacheable

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        path: str = scope["path"]
        allowed = self.query_names.get(path)
        route = "other" if allowed is None else path
        status = [500]
        try:
            headers = dict(scope["headers"])
            if path.startswith(("/analytics/", "/health/")):
                client = scope.get("client")
                rejection = self.serving.guard.check(headers.get(b"x-api-key"), client[0] if client else "unknown")
                if rejection is not None:
                    status[0] = rejection.status
                    await _send_rejection(send, rejection.status, rejection.detail, rejection.retry_after)
                    return
            pairs = query_pairs(scope["query_string"]) if scope["query_string"] else []
            if path in self.cacheable and scope["method"] == "GET":
                key = cache_key(path, pairs)
                entry = self.serving.cache.get(key)
                if entry is not None:
                    self.serving.telemetry.cache_hit()
                    if not_modified(headers.get(b"if-none-match"), entry.etag):
                        status[0] = 304
                        await send(
                            {"type": "http.response.start", "status": 304, "headers": not_modified_headers(entry)}
                        )
                        await send({"type": "http.response.body", "body": b""})
                    else:
                        status[0] = 200
                        await send({"type": "http.response.start", "status": 200, "headers": entry.headers})
                        await send({"type": "http.response.body", "body": entry.body})
                    return
                self.serving.telemetry.cache_miss()
                scope[CACHE_KEY] = key
            unknown = next((name for name, _ in pairs if allowed is not None and name not in allowed), None)
            if unknown is not None:
                status[0] = 422
                await _send_unknown_parameter(send, unknown)
                return

            async def send_and_record(message: Message) -> None:
                if message["type"] == "http.response.start":
                    status[0] = message["status"]
                await send(message)

            await self.app(scope, receive, send_and_record)
        finally:
            self.serving.telemetry.observe(route, status[0], time.perf_counter() - started)


async def _send_rejection(send: Send, status: int, detail: str, retry_after: int | None) -> None:
    body = orjson.dumps({"detail": detail})
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if retry_after is not None:
        headers.append((b"retry-after", str(retry_after).encode()))
    if status == 401:
        headers.append((b"www-authenticate", b'APIKey header="X-API-Key"'))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _send_unknown_parameter(send: Send, name: str) -> None:
    """422 in FastAPI's validation error shape: a misspelt parameter must not be silently ignored."""
    detail = [{"type": "extra_forbidden", "loc": ["query", name], "msg": "unknown query parameter"}]
    body = orjson.dumps({"detail": detail})
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 422, "headers": headers})
    await send({"type": "http.response.body", "body": body})
