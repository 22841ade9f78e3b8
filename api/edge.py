"""The outermost ASGI layer: API keys, rate limits, cached answers, liveness, request metrics.

A cache hit is answered here, before routing and parameter validation, from bytes rendered by the
request that missed: a dict lookup, no PostgreSQL round trip. The cache key is the path plus the
query parameters decoded exactly as Starlette decodes them, stably sorted by name (so repeated
parameters keep their order: the last value still wins). `GET /health` is answered here too, so the
liveness probe (and the benchmark's ceiling) costs no more than a cached answer without the guard.
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
HEALTH_PATH = "/health"
HEALTH_BODY = b'{"status":"ok"}'
HEALTH_HEADERS = [
    (b"content-type", b"application/json"),
    (b"content-length", str(len(HEALTH_BODY)).encode()),
    (b"cache-control", b"no-store"),
]
GUARDED_PREFIXES = ("/analytics/", "/health/")
UNGUARDED_PATHS = frozenset({"/health/ready"})
"""Probed by load balancers, which send no API key: no key, no rate limit (the verdict is cached 1 s)."""
MEMO_ENTRIES = 4096
MEMO_QUERY_BYTES = 1024
"""Parsed query strings are memoized only when short, so the memo stays small whatever clients send."""


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
        self._parsed: dict[tuple[str, bytes], tuple[bytes, str | None]] = {}

    def _parse(self, path: str, query_string: bytes) -> tuple[bytes, str | None]:
        """(cache key, first unknown parameter or None), memoized per raw request line."""
        memo_key = (path, query_string)
        parsed = self._parsed.get(memo_key)
        if parsed is None:
            pairs = query_pairs(query_string) if query_string else []
            allowed = self.query_names.get(path, frozenset())
            unknown = next((name for name, _ in pairs if name not in allowed), None)
            parsed = (cache_key(path, pairs), unknown)
            if len(query_string) <= MEMO_QUERY_BYTES:
                if len(self._parsed) >= MEMO_ENTRIES:
                    self._parsed.clear()
                self._parsed[memo_key] = parsed
        return parsed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["method"] == "HEAD":
            # HEAD is GET without the body (RFC 9110 9.3.2), on every GET route: headers and status as for GET.
            scope = {**scope, "method": "GET"}
            send = _without_body(send)
        started = time.perf_counter()
        path: str = scope["path"]
        route = path if path in self.query_names else "other"
        status = [500]
        try:
            if path == HEALTH_PATH and scope["method"] == "GET" and not scope["query_string"]:
                status[0] = 200
                await send({"type": "http.response.start", "status": 200, "headers": HEALTH_HEADERS})
                await send({"type": "http.response.body", "body": HEALTH_BODY})
                return
            headers = dict(scope["headers"])
            if path.startswith(GUARDED_PREFIXES) and path not in UNGUARDED_PATHS:
                client = scope.get("client")
                rejection = await self.serving.guard.check(
                    headers.get(b"x-api-key"), client[0] if client else "unknown"
                )
                if rejection is not None:
                    status[0] = rejection.status
                    await _send_rejection(send, rejection.status, rejection.detail, rejection.retry_after)
                    return
            if route != "other":
                key, unknown = self._parse(path, scope["query_string"])
                if path in self.cacheable and scope["method"] == "GET":
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


def _without_body(send: Send) -> Send:
    """`send` that keeps status and headers (content-length included), ends the response right after
    them and drops whatever body the app sends (so HEAD on a streaming route, e.g. server-sent events,
    ends at once: the server then reports the request as disconnected to the app)."""
    finished = False

    async def send_head(message: Message) -> None:
        nonlocal finished
        if finished:
            return
        await send(message)
        if message["type"] == "http.response.start":
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            finished = True

    return send_head


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
