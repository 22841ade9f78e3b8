"""The API's PostgreSQL connection pool (psycopg 3, async)."""

from __future__ import annotations

from psycopg_pool import AsyncConnectionPool


def create_pool(database_url: str, *, max_size: int, statement_timeout_ms: int) -> AsyncConnectionPool:
    """An unopened pool of autocommit connections with a statement timeout (open it in the event loop)."""
    return AsyncConnectionPool(
        database_url,
        min_size=1,
        max_size=max_size,
        open=False,
        timeout=5.0,
        name="shoppulse-api",
        kwargs={
            "autocommit": True,
            "options": f"-c statement_timeout={int(statement_timeout_ms)} -c default_transaction_read_only=on",
            "application_name": "shoppulse-api",
        },
    )
