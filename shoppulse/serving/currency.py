"""Currency conversion of served money: daily FX cross rates, exact sums, one half-to-even rounding.

A row's money is in minor units of its native currency on its UTC day. Asking for `currency=T`
converts each (UTC day, native currency) sum with that day's cross rate

    factor(day, C -> T) = per_usd(T, day) / per_usd(C, day) × 10^(exponent(T) − exponent(C))

(`fx_rates.per_usd` = units of the currency per 1 USD), adds the converted amounts exactly (PostgreSQL
numeric) and rounds each output value half-to-even to whole minor units of T, once. The factor
carries 34 significant digits; sums are snapped to 12 decimal places before rounding so a true tie
(x.5) stays a tie. A day without its own rate uses the latest earlier rate (else the earliest later
one); USD is 1 by definition.
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal

from psycopg import AsyncConnection

from shoppulse.contract.events import CURRENCY_EXPONENTS
from shoppulse.metrics import conversion_factor
from shoppulse.serving.errors import DataUnavailableError

CURRENCIES = tuple(CURRENCY_EXPONENTS)
ONE = Decimal(1)


HALF_EVEN_SQL = (
    "(CASE WHEN abs(round({value}, 12) - trunc(round({value}, 12))) = 0.5"
    " THEN 2 * round(round({value}, 12) / 2) ELSE round(round({value}, 12)) END)"
)
"""`shoppulse.metrics.round_minor` in SQL, for ranking (PostgreSQL rounds numeric ties away from zero)."""


@dataclass(frozen=True)
class FxTable:
    """All daily rates, per currency sorted by date."""

    dates: dict[str, list[date]] = field(default_factory=dict)
    rates: dict[str, list[Decimal]] = field(default_factory=dict)

    def per_usd(self, currency: str, day: date) -> Decimal | None:
        """The rate in force on `day`: that day's, else the latest earlier one, else the earliest later one."""
        if currency == "USD":
            return ONE
        days = self.dates.get(currency)
        if not days:
            return None
        index = bisect.bisect_right(days, day) - 1
        return self.rates[currency][max(index, 0)]

    def factors(self, target: str, first: date, last: date) -> FxFactors:
        """Conversion factors into `target` for every (UTC day, native currency) in first..last.

        A factor is None when a rate is missing; queries fail (DataUnavailableError) only if rows need it.
        """
        days: list[date] = []
        currencies: list[str] = []
        factors: list[Decimal | None] = []
        for currency in CURRENCIES:
            for day in _days(first, last):
                days.append(day)
                currencies.append(currency)
                rates = {code: self.per_usd(code, day) for code in {currency, target}}
                if currency == target:
                    factors.append(ONE)
                elif None in rates.values():
                    factors.append(None)
                else:
                    factors.append(conversion_factor(currency, target, rates))  # type: ignore[arg-type]
        return FxFactors(target, days, currencies, factors)


@dataclass(frozen=True)
class FxFactors:
    """Parallel arrays, bound as SQL parameters and joined on (event_date, currency)."""

    target: str
    days: list[date]
    currencies: list[str]
    factors: list[Decimal | None]

    def missing(self) -> DataUnavailableError:
        """The error for rows whose currency could not be converted."""
        return DataUnavailableError(
            f"analytics.fx_rates lacks a rate needed to convert sales into {self.target}; try the native currency"
        )


def _days(first: date, last: date) -> list[date]:
    return [first + timedelta(days=offset) for offset in range((last - first).days + 1)]


class FxCache:
    """The FX table, loaded once and kept until `fx_rates` is re-materialized (or a TTL passes)."""

    def __init__(self, ttl: Callable[[], float], clock: Callable[[], float] = time.monotonic) -> None:
        self._ttl = ttl
        self._clock = clock
        self._table: FxTable | None = None
        self._loaded_at = 0.0

    def invalidate(self) -> None:
        self._table = None

    async def table(self, conn: AsyncConnection) -> FxTable:
        now = self._clock()
        if self._table is None or now - self._loaded_at > self._ttl():
            self._table = await load_fx_table(conn)
            self._loaded_at = now
        return self._table


async def load_fx_table(conn: AsyncConnection) -> FxTable:
    cursor = await conn.execute(
        "SELECT currency::text, rate_date, per_usd FROM analytics.fx_rates ORDER BY currency, rate_date"
    )
    rows: Sequence[tuple[str, date, Decimal]] = await cursor.fetchall()
    table = FxTable()
    for currency, rate_date, per_usd in rows:
        table.dates.setdefault(currency, []).append(rate_date)
        table.rates.setdefault(currency, []).append(per_usd)
    return table
