"""LISTEN for the rollups' `NOTIFY shoppulse_materialized, '<asset>:<YYYY-MM-DD>'` and fan it out.

While connected, `connected` is True and each notification reaches `on_change(asset, partition)`.
Whenever the connection is established or lost, `on_reset()` runs (notifications may have been
missed), and the listener reconnects with capped exponential backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import date

import psycopg

CHANNEL = "shoppulse_materialized"
log = logging.getLogger(__name__)


def parse_payload(payload: str) -> tuple[str, date | None]:
    """'sales:2025-03-09' -> ('sales', date(2025, 3, 9)); a payload without a valid date -> (asset, None)."""
    asset, _, partition = payload.partition(":")
    try:
        return asset.strip(), date.fromisoformat(partition.strip())
    except ValueError:
        return asset.strip(), None


class NotifyListener:
    def __init__(
        self,
        conninfo: str,
        on_change: Callable[[str, date | None], None],
        on_reset: Callable[[], None],
        *,
        probe_seconds: float = 15.0,
        max_backoff: float = 30.0,
    ) -> None:
        self.conninfo = conninfo
        self.on_change = on_change
        self.on_reset = on_reset
        self.probe_seconds = probe_seconds
        self.max_backoff = max_backoff
        self.connected = False
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="notify-listener")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self.connected = False

    def _dispatch(self, payload: str) -> None:
        try:
            self.on_change(*parse_payload(payload))
        except Exception:  # a bad subscriber must not stop invalidation
            log.exception("NOTIFY handler failed for %r; resetting", payload)
            self.on_reset()

    async def _run(self) -> None:
        backoff = 0.5
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(self.conninfo, autocommit=True) as conn:
                    await conn.execute(f"LISTEN {CHANNEL}")
                    self.connected = True
                    self.on_reset()
                    backoff = 0.5
                    while True:
                        async for notify in conn.notifies(timeout=self.probe_seconds):
                            self._dispatch(notify.payload)
                        await conn.execute("SELECT 1")  # a silent connection loss surfaces here
            except psycopg.Error as exc:
                if self.connected:
                    log.warning("NOTIFY listener lost its connection: %s", exc)
                self.connected = False
                self.on_reset()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self.max_backoff)
