"""What every query function returns: the data, its freshness metadata and its cache dependencies."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from psycopg import AsyncConnection

from shoppulse.serving.currency import FxCache


@dataclass(frozen=True)
class Scope:
    """Partitions of one asset an answer was computed from (None, None = whichever is newest)."""

    asset: str
    first: date | None = None
    last: date | None = None

    def covers(self, asset: str, partition: date | None) -> bool:
        """Whether re-materializing `asset` at `partition` (None = unknown) can change the answer."""
        if asset != self.asset:
            return False
        if partition is None or self.first is None or self.last is None:
            return True
        return self.first <= partition <= self.last


@dataclass(frozen=True)
class Meta:
    """Freshness of an answer. `as_of`: newest materialization used; `watermark`: newest event included."""

    as_of: datetime | None
    watermark: datetime | None
    complete: bool
    tz: str
    currency: str | None = None
    currency_exponent: int | None = None


@dataclass(frozen=True)
class QueryResult:
    """An answer plus what it depends on: the assets/partitions whose change invalidates it, and the
    instant after which it may change on its own (a partition closing, a new local day)."""

    data: Any
    meta: Meta
    dependencies: tuple[Scope, ...]
    valid_until: datetime | None = None


@dataclass(frozen=True)
class QueryContext:
    """What a query function needs besides its parameters."""

    conn: AsyncConnection
    now: datetime
    lateness_horizon: timedelta
    fx: FxCache
