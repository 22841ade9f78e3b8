"""Unit tests of the pure building blocks: buckets, table planning, rounding, ETags, the cache."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from itertools import pairwise

import psycopg
import pytest
from psycopg import sql

from api.edge import cache_key, query_pairs
from api.render import build_entry, not_modified
from shoppulse.metrics import round_minor
from shoppulse.serving.cache import ResponseCache
from shoppulse.serving.currency import HALF_EVEN_SQL, FxTable
from shoppulse.serving.errors import InvalidParameterError
from shoppulse.serving.listener import parse_payload
from shoppulse.serving.results import Scope
from shoppulse.serving.tables import PRODUCT_TABLES, SALES_TABLES, choose_table, plan_pieces
from shoppulse.serving.timeframe import Granularity, buckets, build_window, resolve_dates, zone


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.mark.parametrize(
    ("tz", "day", "hours"),
    [
        ("America/New_York", date(2025, 3, 9), 23),
        ("America/New_York", date(2025, 11, 2), 25),
        ("Europe/Berlin", date(2025, 3, 30), 23),
        ("Australia/Lord_Howe", date(2025, 4, 6), 24),  # 30-minute DST shift: 24 buckets, one 90 minutes long
        ("Asia/Kolkata", date(2025, 3, 9), 24),
    ],
)
def test_hour_buckets_per_local_day(tz: str, day: date, hours: int) -> None:
    window = build_window(tz, day, day)
    periods = buckets(window, Granularity.HOUR)
    assert len(periods) == hours
    assert periods[0].start == window.start and periods[-1].end == window.end
    assert all(a.end == b.start for a, b in pairwise(periods))


def test_day_buckets_are_local_midnights() -> None:
    periods = buckets(build_window("America/New_York", date(2025, 3, 8), date(2025, 3, 10)), Granularity.DAY)
    assert [(p.label, p.start, p.end) for p in periods] == [
        ("2025-03-08", utc("2025-03-08T05:00"), utc("2025-03-09T05:00")),
        ("2025-03-09", utc("2025-03-09T05:00"), utc("2025-03-10T04:00")),
        ("2025-03-10", utc("2025-03-10T04:00"), utc("2025-03-11T04:00")),
    ]


def test_a_skipped_local_midnight_starts_the_day_when_clocks_jump() -> None:
    # Santiago skips 2024-09-08 00:00 (-04 -> -03): the day starts at 04:00Z = 01:00 -03
    window = build_window("America/Santiago", date(2024, 9, 8), date(2024, 9, 8))
    assert window.start == utc("2024-09-08T04:00")
    assert len(buckets(window, Granularity.HOUR)) == 23


def test_table_choice_follows_alignment_and_dimensions() -> None:
    new_york = [p.start for p in buckets(build_window("America/New_York", date(2025, 3, 9), date(2025, 3, 9)), "day")]
    kolkata = [p.start for p in buckets(build_window("Asia/Kolkata", date(2025, 3, 9), date(2025, 3, 9)), "day")]
    assert choose_table(SALES_TABLES, ["currency"], [utc("2025-03-09T00:00"), utc("2025-03-10T00:00")]).name == (
        "sales_daily"
    )
    assert choose_table(SALES_TABLES, ["currency"], new_york).name == "sales_hourly"
    assert choose_table(SALES_TABLES, ["currency"], kolkata).name == "sales_15m"
    assert choose_table(SALES_TABLES, ["country"], [utc("2025-03-09T00:00")]).name == "sales_15m"


def test_plan_pieces_reads_whole_utc_days_from_daily_tables() -> None:
    window = build_window("America/New_York", date(2025, 3, 8), date(2025, 3, 10))
    pieces = plan_pieces(PRODUCT_TABLES, ["product_id"], window.start, window.end)
    assert [(p.table.name, p.start, p.end) for p in pieces] == [
        ("product_sales_daily", utc("2025-03-09T00:00"), utc("2025-03-11T00:00")),
        ("product_sales_hourly", utc("2025-03-08T05:00"), utc("2025-03-09T00:00")),
        ("product_sales_hourly", utc("2025-03-11T00:00"), utc("2025-03-11T04:00")),
    ]
    kolkata = build_window("Asia/Kolkata", date(2025, 3, 9), date(2025, 3, 9))
    with pytest.raises(InvalidParameterError) as error:
        plan_pieces(PRODUCT_TABLES, ["product_id"], kolkata.start, kolkata.end)
    assert error.value.parameter == "tz"


def test_date_defaults_and_caps() -> None:
    now = utc("2025-03-15T20:00")
    assert resolve_dates(None, None, now=now, tz=zone("Pacific/Auckland"), max_days=31, default_days=7) == (
        date(2025, 3, 10),
        date(2025, 3, 16),
        True,
    )
    with pytest.raises(InvalidParameterError) as error:
        resolve_dates(date(2025, 1, 1), date(2025, 2, 1), now=now, tz=zone("UTC"), max_days=31, default_days=7)
    assert error.value.parameter == "to"
    with pytest.raises(InvalidParameterError) as error:
        zone("../../etc/passwd")
    assert error.value.parameter == "tz"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2.5", 2),
        ("3.5", 4),
        ("-2.5", -2),
        ("1.25", 1),
        ("2.4999999999999999999999", 2),  # a tie computed with a tiny factor error stays a tie
        ("2.5000000000000000000001", 2),
        ("2.500000001", 3),
        ("123456789012345678.5", 123456789012345678),
    ],
)
def test_round_minor_is_half_to_even(value: str, expected: int) -> None:
    assert round_minor(Decimal(value)) == expected


def test_sql_ranking_rounds_like_python(stack: object, settings: object) -> None:
    values = ["2.5", "3.5", "-2.5", "-3.5", "1.25", "2.4999999999999999999999", "0.5", "7"]
    query = sql.SQL("SELECT {expr} FROM unnest(%s::numeric[]) AS t(v)").format(
        expr=sql.SQL(HALF_EVEN_SQL).format(value=sql.Identifier("v"))
    )
    with psycopg.connect(settings.database_url) as conn:  # type: ignore[attr-defined]
        rounded = [int(row[0]) for row in conn.execute(query, ([Decimal(v) for v in values],)).fetchall()]
    assert rounded == [round_minor(Decimal(v)) for v in values]


def test_fx_factors_use_the_latest_earlier_rate() -> None:
    table = FxTable(
        dates={"EUR": [date(2025, 3, 1), date(2025, 3, 10)], "GBP": [date(2025, 3, 5)]},
        rates={"EUR": [Decimal("0.9"), Decimal("0.92")], "GBP": [Decimal("0.8")]},
    )
    factors = table.factors("EUR", date(2025, 3, 1), date(2025, 3, 10))
    lookup = dict(zip(zip(factors.days, factors.currencies, strict=True), factors.factors, strict=True))
    assert lookup[(date(2025, 3, 9), "USD")] == Decimal("0.9")
    assert lookup[(date(2025, 3, 10), "USD")] == Decimal("0.92")
    assert lookup[(date(2025, 3, 1), "GBP")] == Decimal("1.125")  # before its first rate: the earliest one
    assert lookup[(date(2025, 3, 1), "EUR")] == 1
    assert lookup[(date(2025, 3, 1), "JPY")] is None  # no JPY rate at all: only an error if JPY rows exist


@pytest.mark.parametrize(
    ("header", "matches"),
    [(None, False), (b'"abc"', True), (b'W/"abc"', True), (b'"x", "abc"', True), (b"*", True), (b'"abcd"', False)],
)
def test_if_none_match(header: bytes | None, matches: bool) -> None:
    assert not_modified(header, b'"abc"') is matches


def entry(dependencies: tuple[Scope, ...], expires_at: float = 100.0) -> object:
    return build_entry(b"{}", complete=True, private=False, dependencies=dependencies, expires_at=expires_at)


def test_cache_invalidation_is_per_asset_and_partition() -> None:
    clock = [0.0]
    cache = ResponseCache(10, clock=lambda: clock[0])
    cache.put(b"march", entry((Scope("sales", date(2025, 3, 1), date(2025, 3, 31)),)), cache.generation)
    cache.put(b"latest", entry((Scope("users"),)), cache.generation)
    cache.invalidate("sales", date(2025, 4, 1))
    cache.invalidate("users", None)
    assert cache.get(b"march") is not None and cache.get(b"latest") is None
    cache.invalidate("sales", date(2025, 3, 31))
    assert cache.get(b"march") is None


def test_cache_refuses_answers_that_raced_an_invalidation_and_expires_entries() -> None:
    clock = [0.0]
    cache = ResponseCache(2, clock=lambda: clock[0])
    generation = cache.generation
    cache.invalidate("sales", date(2025, 3, 1))
    assert cache.put(b"raced", entry(()), generation) is False
    cache.put(b"a", entry((), expires_at=5.0), cache.generation)
    cache.put(b"b", entry(()), cache.generation)
    cache.put(b"c", entry(()), cache.generation)  # evicts the least recently used, "a"
    assert cache.get(b"a") is None and cache.get(b"b") is not None
    clock[0] = 100.0
    assert cache.get(b"b") is None


def test_cache_is_bounded_by_bytes() -> None:
    cache = ResponseCache(100, max_bytes=5)  # each entry's body is b"{}": 2 bytes
    for key in (b"a", b"b", b"c"):
        cache.put(key, entry(()), cache.generation)
    assert (cache.get(b"a"), cache.bytes, len(cache)) == (None, 4, 2)
    cache.invalidate("sales", None)
    cache.clear()
    assert (cache.bytes, len(cache)) == (0, 0)


def test_cache_key_normalizes_order_but_keeps_repeated_values_in_order() -> None:
    def key(query: bytes) -> bytes:
        return cache_key("/p", query_pairs(query))

    assert key(b"a=1&b=2") == key(b"b=2&a=1")
    assert key(b"tz=UTC&tz=Asia/Tokyo") != key(b"tz=Asia/Tokyo&tz=UTC")
    assert key(b"%74z=UTC") == key(b"tz=UTC")


def test_notify_payload() -> None:
    assert parse_payload("sales:2025-03-09") == ("sales", date(2025, 3, 9))
    assert parse_payload("users") == ("users", None)
