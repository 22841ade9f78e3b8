"""Fixtures of the rollup tests: a migrated scratch database on the real PostgreSQL, the scenario lake."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import polars as pl
import psycopg
import pytest
from psycopg import sql

from shoppulse.rollups import catalog
from shoppulse.rollups.writer import PartitionWrite, replace_partition
from shoppulse.settings import Settings, get_settings
from shoppulse.stack import services
from shoppulse.warehouse.db import migrate
from tests.rollups import scenario


@pytest.fixture
def new_database(stack: services.UpReport, settings: Settings) -> Iterator[Callable[[], str]]:
    """Factory of fresh, migrated databases (postgresql:// URLs); dropped after the test."""
    created: list[str] = []

    def make() -> str:
        name = f"test_rollups_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(settings.database_url, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        created.append(name)
        url = urlunsplit(urlsplit(settings.database_url)._replace(path="/" + name))
        migrate(url)
        return url

    yield make
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        for name in created:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture
def small_check_bound(monkeypatch: pytest.MonkeyPatch) -> Iterator[int]:
    """SHOPPULSE_RECOMPUTE_CHECK_MAX_EVENTS=30 for the test (settings re-read on both sides): a test day of
    more events is "too large" for the recompute check's in-memory path, as a big production day is."""
    monkeypatch.setenv("SHOPPULSE_RECOMPUTE_CHECK_MAX_EVENTS", "30")
    get_settings.cache_clear()
    yield 30
    monkeypatch.delenv("SHOPPULSE_RECOMPUTE_CHECK_MAX_EVENTS")
    get_settings.cache_clear()


@pytest.fixture
def database(new_database: Callable[[], str]) -> str:
    return new_database()


def write_fx(url: str, days: list[dt.date], per_usd: dict[str, object] | None = None) -> None:
    """fx_rates rows for `days` (the scenario's round rates unless given)."""
    rates = {"USD": "1", **{c: str(r) for c, r in (per_usd or scenario.FX).items()}}
    with psycopg.connect(url, autocommit=True) as conn:
        for day in days:
            rows = pl.DataFrame(
                {"rate_date": [day] * len(rates), "currency": list(rates), "per_usd": list(rates.values())}
            )
            replace_partition(conn, PartitionWrite(catalog.FX_RATES, day, {"fx_rates": rows}, lake_version=0))


@pytest.fixture
def scenario_lake(tmp_path: Path) -> Path:
    lake = tmp_path / "lake"
    scenario.build_lake(lake)
    return lake


def fetch(url: str, query: str, *params: object) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute(query, params).fetchall()
