"""HTTP hygiene of the served API: HEAD on GET routes, request-head timeout (408), 400s that name the
problem, and the connection bound; over real sockets to uvicorn with the stack's protocol class."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Iterator
from urllib.parse import urlsplit

import httpx
import pytest
from starlette.responses import StreamingResponse

from api.http_protocol import GuardedHttpToolsProtocol
from api.main import create_app
from shoppulse.settings import Settings
from tests.api.conftest import live_server


class QuickHeadTimeout(GuardedHttpToolsProtocol):
    head_timeout = 0.5


@pytest.fixture(scope="module")
def base_url(seeded_database: str) -> Iterator[str]:
    app = create_app(Settings(database_url_override=seeded_database, api_rate_limit="100000/minute"))
    with live_server(app, http=QuickHeadTimeout, timeout_keep_alive=5) as url:
        yield url


def exchange(base_url: str, raw: bytes, timeout: float = 10.0) -> bytes:
    """Send `raw`, then read until the server closes the connection (or `timeout`)."""
    address = urlsplit(base_url)
    with socket.create_connection((address.hostname, address.port), timeout=timeout) as sock:
        sock.sendall(raw)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


@pytest.mark.parametrize("path", ["/health", "/health/ready", "/analytics/customers/returning", "/openapi.json"])
def test_head_answers_like_get_without_a_body(base_url: str, path: str) -> None:
    with httpx.Client(base_url=base_url) as client:
        get, head = client.get(path), client.head(path)
    assert head.status_code == get.status_code != 405
    assert head.content == b""
    assert head.headers["content-type"] == get.headers["content-type"]
    assert head.headers["content-length"] == str(len(get.content))


def test_an_unfinished_request_head_gets_408_and_is_closed(base_url: str) -> None:
    answer = exchange(base_url, b"GET /health\r\n")  # never finishes its head
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert answer.endswith(b"request head not received within 0.5s")


def test_a_silent_connection_is_closed(base_url: str) -> None:
    assert exchange(base_url, b"").startswith(b"HTTP/1.1 408 ")


def test_a_keep_alive_connection_serves_requests_then_times_out_a_partial_one(base_url: str) -> None:
    answer = exchange(base_url, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\nGET /health HTTP/1.1\r\nHo")
    assert answer.count(b"HTTP/1.1 200 OK") == 1
    assert answer.rstrip().endswith(b"request head not received within 0.5s")


def test_malformed_request_gets_a_400_that_names_the_problem(base_url: str) -> None:
    answer = exchange(base_url, b"G@T /health HTTP/1.1\r\nHost: x\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 400 ")
    body = answer.split(b"\r\n\r\n", 1)[1].decode()
    assert body.startswith("Invalid HTTP request: ") and len(body) > len("Invalid HTTP request: ")


def test_concurrency_bound_answers_503_beyond_it(seeded_database: str) -> None:
    app = create_app(Settings(database_url_override=seeded_database, api_rate_limit="100000/minute"))
    with live_server(app, http=QuickHeadTimeout, limit_concurrency=2) as url:
        address = urlsplit(url)
        held = [socket.create_connection((address.hostname, address.port)) for _ in range(2)]
        try:
            answer = exchange(url, b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        finally:
            for sock in held:
                sock.close()
    assert answer.startswith(b"HTTP/1.1 503 ")


def test_head_on_an_endless_stream_ends_at_once(seeded_database: str) -> None:
    """A streaming GET route (server-sent events, say) must not hold a HEAD request open."""
    app = create_app(Settings(database_url_override=seeded_database, api_rate_limit="100000/minute"))

    async def ticks() -> AsyncIterator[bytes]:
        while True:
            yield b"data: tick\n\n"
            await asyncio.sleep(0.05)

    app.add_api_route("/stream", lambda: StreamingResponse(ticks(), media_type="text/event-stream"))
    with live_server(app, http=QuickHeadTimeout) as url, httpx.Client(base_url=url, timeout=10) as client:
        head = client.head("/stream")
        assert head.status_code == 200 and head.content == b""
        assert head.headers["content-type"].startswith("text/event-stream")
        assert client.get("/health").status_code == 200  # the same keep-alive connection serves on
