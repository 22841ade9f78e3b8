"""Fixtures of the API tests: a migrated, seeded database on the real PostgreSQL, and the app served
by a real uvicorn server on a loopback port (in a thread), talked to over HTTP with httpx."""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import psycopg
import pytest
import uvicorn
from fastapi import FastAPI
from psycopg import sql

from api.main import create_app
from shoppulse.settings import Settings
from shoppulse.stack import services
from shoppulse.warehouse.db import migrate
from tests.api.seed import NOW, seed


def database_url(settings: Settings, name: str) -> str:
    """The server's URL with another database (a postgresql:// URL, as migrate() needs)."""
    return urlunsplit(urlsplit(settings.database_url)._replace(path="/" + name))


@contextmanager
def scratch_database(settings: Settings, prefix: str) -> Iterator[str]:
    """A new, migrated database (dropped on exit)."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = database_url(settings, name)
    try:
        migrate(url)
        yield url
    finally:
        with psycopg.connect(settings.database_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture(scope="session")
def seeded_database(stack: services.UpReport, settings: Settings) -> Iterator[str]:
    """The serving tables holding the rows of tests/api/seed.py (tests only read it)."""
    with scratch_database(settings, "test_api") as url:
        seed(url)
        yield url


@contextmanager
def live_server(app: FastAPI, port: int = 0, **config: Any) -> Iterator[str]:
    """Serve `app` with uvicorn on 127.0.0.1 (`port`, 0 = a free one) in a thread (`config`: more
    uvicorn.Config options); yields the base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    port = sock.getsockname()[1]
    config = {"timeout_graceful_shutdown": 2, **config}
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on", **config))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()


@contextmanager
def api_client(url: str, *, now: datetime = NOW, **overrides: Any) -> Iterator[httpx.Client]:
    """An HTTP client of a live app over database `url`, clock fixed at `now`."""
    options: dict[str, Any] = {"api_rate_limit": "100000/minute", **overrides}
    app = create_app(Settings(database_url_override=url, **options), now=lambda: now)
    with live_server(app) as base_url, httpx.Client(base_url=base_url, timeout=30) as client:
        client.app = app  # type: ignore[attr-defined]  # tests may inspect the app's state
        yield client


@pytest.fixture(scope="session")
def client(seeded_database: str) -> Iterator[httpx.Client]:
    """The app over the seeded database, clock at seed.NOW, no API keys."""
    with api_client(seeded_database) as http:
        yield http


@pytest.fixture
def make_client(seeded_database: str) -> Iterator[Callable[..., httpx.Client]]:
    """Factory of extra clients (other settings or clock) over the seeded database."""
    with ExitStack() as stack:
        yield lambda **overrides: stack.enter_context(api_client(seeded_database, **overrides))
