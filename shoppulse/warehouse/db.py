"""Connections to the analytics database and its versioned migrations (alembic, raw SQL)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

import psycopg

if TYPE_CHECKING:
    from alembic.config import Config

SCHEMA = "analytics"
MIGRATIONS_DIR = Path(__file__).with_name("migrations")
VERSION_TABLE = "schema_version"


def sqlalchemy_url(database_url: str) -> str:
    """`postgresql://...` (libpq URL) as the SQLAlchemy URL alembic needs (psycopg 3 driver)."""
    for prefix in ("postgresql+psycopg://", "postgresql://", "postgres://"):
        if database_url.startswith(prefix):
            return "postgresql+psycopg://" + database_url[len(prefix) :]
    raise ValueError(f"DATABASE_URL must be a postgresql:// URL, got {database_url.split('@')[-1]!r}")


def with_database(database_url: str, database: str) -> str:
    """The same server URL pointing at another database."""
    parts = urlsplit(database_url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + database, parts.query, parts.fragment))


def alembic_config(database_url: str) -> Config:
    from alembic.config import Config  # imported on use: alembic costs ~1 s of every run worker's start-up

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", sqlalchemy_url(database_url).replace("%", "%%"))
    return config


def migrate(database_url: str, revision: str = "head") -> None:
    """Bring the analytics schema to `revision` (idempotent; concurrent callers serialize on a lock)."""
    from alembic import command

    command.upgrade(alembic_config(database_url), revision)


def current_revision(database_url: str) -> str | None:
    with psycopg.connect(database_url) as conn:
        exists = conn.execute("SELECT to_regclass(%s)", (f"{SCHEMA}.{VERSION_TABLE}",)).fetchone()
        if not exists or exists[0] is None:
            return None
        row = conn.execute(f"SELECT version_num FROM {SCHEMA}.{VERSION_TABLE}").fetchone()
        return row[0] if row else None
