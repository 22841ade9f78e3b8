"""Daily FX rates: a deterministic synthetic table (no network here), and the rate in force on a day.

SYNTHETIC: each currency's units per USD is a base rate moved by a smooth yearly wave (±1.5%) plus a
small daily jitter (±0.25%) drawn from a hash of (currency, date), in integer basis points, so a day's
rate is the same on every machine and every rerun. Rates are rounded to 8 decimals (`numeric(20,8)`).
A real feed would replace `synthetic_rates`; everything downstream reads `analytics.fx_rates`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterable
from decimal import ROUND_HALF_EVEN, Decimal

import polars as pl
import psycopg

from shoppulse.contract.events import CURRENCY_EXPONENTS

BASE_PER_USD: dict[str, Decimal] = {
    "USD": Decimal(1),
    "EUR": Decimal("0.92"),
    "GBP": Decimal("0.79"),
    "JPY": Decimal(150),
}
WAVE_BP = 150
JITTER_BP = 25
RATE_QUANTUM = Decimal("1e-8")
_YEAR_DAYS = 365


def synthetic_rates(day: dt.date) -> dict[str, Decimal]:
    """Units of each supported currency per 1 USD on `day` (USD = 1)."""
    rates = {}
    for currency in CURRENCY_EXPONENTS:
        if currency == "USD":
            rates[currency] = Decimal(1)
            continue
        phase = int.from_bytes(hashlib.blake2b(currency.encode(), digest_size=2).digest(), "big") % _YEAR_DAYS
        position = (day.toordinal() + phase) % _YEAR_DAYS
        # Triangle wave in [-WAVE_BP, WAVE_BP] over the year, integer arithmetic only.
        half = _YEAR_DAYS // 2
        wave = WAVE_BP - (2 * WAVE_BP * abs(position - half)) // half
        digest = hashlib.blake2b(f"{currency}:{day.isoformat()}".encode(), digest_size=4).digest()
        jitter = int.from_bytes(digest, "big") % (2 * JITTER_BP + 1) - JITTER_BP
        factor = 1 + Decimal(wave + jitter) / 10_000
        rates[currency] = (BASE_PER_USD[currency] * factor).quantize(RATE_QUANTUM, rounding=ROUND_HALF_EVEN)
    return rates


def fx_rows(days: Iterable[dt.date]) -> pl.DataFrame:
    """Rows of `analytics.fx_rates` for `days`."""
    rows = [
        (day, currency, str(rate.quantize(RATE_QUANTUM)))  # the text numeric(20,8) gives back
        for day in days
        for currency, rate in sorted(synthetic_rates(day).items())
    ]
    return pl.DataFrame(rows, schema={"rate_date": pl.Date, "currency": pl.String, "per_usd": pl.String}, orient="row")


class MissingRateError(LookupError):
    """No rate at all for a currency in `analytics.fx_rates`: the fx_rates rollup has not run."""


def rates_in_force(conn: psycopg.Connection, day: dt.date, currencies: Iterable[str]) -> dict[str, Decimal]:
    """Per currency, the rate in force on `day`: that day's, else the latest earlier one, else the earliest
    later one (the same rule the API uses). USD is 1."""
    wanted = sorted(set(currencies) - {"USD"})
    rates: dict[str, Decimal] = {"USD": Decimal(1)}
    for currency in wanted:
        row = conn.execute(
            """
            SELECT per_usd FROM (
                (SELECT per_usd, 0 AS pref, rate_date FROM analytics.fx_rates
                  WHERE currency = %(c)s AND rate_date <= %(d)s ORDER BY rate_date DESC LIMIT 1)
                UNION ALL
                (SELECT per_usd, 1 AS pref, rate_date FROM analytics.fx_rates
                  WHERE currency = %(c)s AND rate_date > %(d)s ORDER BY rate_date LIMIT 1)
            ) candidates ORDER BY pref LIMIT 1
            """,
            {"c": currency, "d": day},
        ).fetchone()
        if row is None:
            raise MissingRateError(f"no FX rate for {currency} in analytics.fx_rates (materialize fx_rates first)")
        rates[currency] = Decimal(row[0])
    return rates
