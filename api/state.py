"""Everything one API process holds: settings, pool, caches, guard, listener and metrics."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from psycopg_pool import AsyncConnectionPool

from api.telemetry import Telemetry
from shoppulse.contract.events import CURRENCY_EXPONENTS
from shoppulse.serving.cache import ResponseCache
from shoppulse.serving.changes import ChangeFeed
from shoppulse.serving.currency import FxCache
from shoppulse.serving.db import create_pool
from shoppulse.serving.guard import Guard, parse_keys
from shoppulse.serving.listener import NotifyListener
from shoppulse.serving.readiness import HealthMonitor
from shoppulse.settings import Settings

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class ServingState:
    settings: Settings
    pool: AsyncConnectionPool
    cache: ResponseCache
    fx: FxCache
    guard: Guard
    listener: NotifyListener
    telemetry: Telemetry
    now: Clock
    monitor: HealthMonitor
    changes: ChangeFeed

    @property
    def lateness_horizon(self) -> timedelta:
        return timedelta(hours=self.settings.lateness_horizon_hours)

    def cache_ttl(self) -> float:
        """How long an answer may be served from memory: long only while NOTIFY invalidation works."""
        if self.listener.connected:
            return self.settings.api_cache_ttl_seconds
        return self.settings.api_cache_fallback_ttl_seconds

    @classmethod
    def create(cls, settings: Settings, now: Clock = utc_now) -> ServingState:
        if settings.reporting_currency not in CURRENCY_EXPONENTS:
            supported = ", ".join(CURRENCY_EXPONENTS)
            raise ValueError(f"SHOPPULSE_REPORTING_CURRENCY={settings.reporting_currency!r} is not one of {supported}")
        telemetry = Telemetry()
        cache = ResponseCache(settings.api_cache_max_entries)
        state: ServingState

        def on_change(asset: str, partition: date | None) -> None:
            telemetry.invalidations.inc()
            if asset == "fx_rates":
                state.fx.invalidate()
            state.cache.invalidate(asset, partition)
            state.changes.publish_change(asset, partition)  # after invalidation: a reload sees the new rows

        published_state: list[bool | None] = [None]  # the listener state the streams were last told

        def on_reset() -> None:
            state.fx.invalidate()
            state.cache.clear()
            connected = state.listener.connected
            if published_state[0] is not connected or connected:  # not once per failed reconnect attempt
                published_state[0] = connected
                state.changes.publish_reset("database notifications " + ("connected" if connected else "lost"))

        state = cls(
            settings=settings,
            pool=create_pool(
                settings.database_url,
                max_size=settings.api_db_pool_size,
                statement_timeout_ms=settings.api_statement_timeout_ms,
            ),
            cache=cache,
            fx=FxCache(ttl=lambda: state.cache_ttl()),
            guard=Guard(parse_keys(settings.api_keys), settings.api_rate_limit),
            listener=NotifyListener(settings.database_url, on_change, on_reset),
            telemetry=telemetry,
            now=now,
            monitor=HealthMonitor(settings),
            changes=ChangeFeed(settings.api_max_streams),
        )
        telemetry.watch(
            cache_entries=lambda: len(state.cache),
            listener_connected=lambda: float(state.listener.connected),
            pool_stats=lambda: state.pool.get_stats(),
        )
        telemetry.live_streams.set_function(lambda: len(state.changes))
        return state
