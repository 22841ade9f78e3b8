"""Every rollup metric against the hand-computed numbers of tests/rollups/scenario.py.

The expected values below are worked out by hand from the scenario's docstring (not by the code
under test): refunds and cancellations booked on the day they happen, a cancelled order as a sale
plus a return, JPY without minor units, a duplicate whose later copy differs, a late event.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path

import pytest

from shoppulse import metrics
from shoppulse.lake import table_version
from shoppulse.lake.layout import LakeTable, read_partition
from shoppulse.rollups import catalog
from shoppulse.rollups.runner import quality_write, run_event_rollups, run_partition_writes
from tests.rollups.conftest import fetch, write_fx
from tests.rollups.scenario import BEYOND_HORIZON_DAY, D1, D2, at

SALES = "orders, units, gross_sales, discounts, returns, net_sales, shipping, taxes, total_sales"
ITEMS = "orders, units, gross_sales, discounts, returns, net_sales"


@pytest.fixture
def rolled_up(scenario_lake: Path, database: str) -> str:
    write_fx(database, [D1, D2])
    run_event_rollups(scenario_lake, database, [D1, D2], catalog.EVENT_ROLLUPS, "USD", run_id="test")
    run_partition_writes(database, [D2], lambda day: quality_write(scenario_lake, day, "test"))
    return database


def test_sales_daily_books_returns_on_their_day_per_native_currency(rolled_up: str) -> None:
    rows = fetch(rolled_up, f"SELECT event_date, currency, {SALES} FROM analytics.sales_daily ORDER BY 1, 2")
    assert rows == [
        # o3 placed and cancelled the same day: a sale and a return, netting to zero
        (D1, "EUR", 1, 1, 4500, 500, 4000, 0, 0, 0, 0),
        # JPY in yen (no minor unit)
        (D1, "JPY", 1, 1, 2000, 0, 0, 2000, 300, 200, 2500),
        # o1 counted once although delivered twice
        (D1, "USD", 1, 3, 13000, 1000, 0, 12000, 500, 960, 13460),
        # o4 placed; o2 (placed on D1) cancelled on D2: returns 2000, shipping −300, taxes −200
        (D2, "JPY", 1, 3, 6000, 600, 2000, 3400, -300, 340, 3440),
        # refund of o1 on D2: returns 4500, taxes −360
        (D2, "USD", 0, 0, 0, 0, 4500, -4500, 0, -360, -4860),
    ]


def test_cancelled_order_nets_to_zero_over_both_days(rolled_up: str) -> None:
    ((net, shipping, taxes, total),) = fetch(
        rolled_up,
        "SELECT sum(net_sales), sum(shipping), sum(taxes), sum(total_sales) FROM analytics.sales_daily"
        " WHERE currency = 'JPY'",
    )
    # o2 (2000 + 300 + 200) placed D1 and cancelled D2 leaves only o4: 5400 net, 0 shipping, 540 tax
    assert (net, shipping, taxes, total) == (5400, 0, 540, 5940)


def test_sales_hourly_and_15m_grains(rolled_up: str) -> None:
    hourly = fetch(
        rolled_up,
        f"SELECT hour_start, currency, {SALES} FROM analytics.sales_hourly WHERE event_date = %s ORDER BY 1, 2",
        D1,
    )
    assert hourly == [
        (at(D1, "10:00:00"), "USD", 1, 3, 13000, 1000, 0, 12000, 500, 960, 13460),
        (at(D1, "12:00:00"), "EUR", 1, 1, 4500, 500, 0, 4000, 0, 760, 4760),
        (at(D1, "15:00:00"), "EUR", 0, 0, 0, 0, 4000, -4000, 0, -760, -4760),
        (at(D1, "23:00:00"), "JPY", 1, 1, 2000, 0, 0, 2000, 300, 200, 2500),
    ]
    quarter_hours = fetch(
        rolled_up,
        "SELECT bucket_start, currency, country, channel, device, orders, net_sales FROM analytics.sales_15m"
        " WHERE event_date = %s ORDER BY 1, 2",
        D1,
    )
    assert quarter_hours == [
        # the later copy of o1 claims country CA: the first-delivered copy (US) wins
        (at(D1, "10:00:00"), "USD", "US", "organic_search", "desktop", 1, 12000),
        (at(D1, "12:15:00"), "EUR", "DE", "direct", "tablet", 1, 4000),
        (at(D1, "15:00:00"), "EUR", "DE", "direct", "tablet", 0, -4000),
        (at(D1, "23:45:00"), "JPY", "JP", "email", "mobile", 1, 2000),
    ]


def test_sales_in_reporting_currency_round_half_even_once(rolled_up: str) -> None:
    daily = fetch(rolled_up, f"SELECT event_date, currency, {SALES} FROM analytics.sales_daily_reporting ORDER BY 1")
    # D1: gross 13000 + 4500/0.8 + 2000 yen/160·100 = 19875; shipping 500 + 187.5 = 687.5 -> 688;
    # total 13460 + 0 + 1562.5 = 15022.5 -> 15022 (half to even)
    # D2: JPY factor 0.625; shipping −187.5 -> −188, taxes −360 + 212.5 = −147.5 -> −148
    assert daily == [
        (D1, "USD", 3, 5, 19875, 1625, 5000, 13250, 688, 1085, 15022),
        (D2, "USD", 1, 3, 3750, 375, 5750, -2375, -188, -148, -2710),
    ]
    jpy_hour = fetch(
        rolled_up,
        f"SELECT {SALES} FROM analytics.sales_hourly_reporting WHERE hour_start = %s",
        at(D1, "23:00:00"),
    )
    assert jpy_hour == [(1, 1, 1250, 0, 0, 1250, 188, 125, 1562)]


def test_products_and_categories(rolled_up: str) -> None:
    products = fetch(
        rolled_up,
        f"SELECT event_date, product_id, category, currency, {ITEMS} FROM analytics.product_sales_daily"
        " ORDER BY 1, 2, 4",
    )
    assert products == [
        (D1, "p1", "shoes", "EUR", 1, 1, 4500, 500, 4000, 0),
        (D1, "p1", "shoes", "USD", 1, 2, 10000, 1000, 0, 9000),
        (D1, "p2", "hats", "USD", 1, 1, 3000, 0, 0, 3000),
        (D1, "p3", "toys", "JPY", 1, 1, 2000, 0, 0, 2000),
        (D2, "p1", "shoes", "USD", 0, 0, 0, 0, 4500, -4500),
        (D2, "p3", "toys", "JPY", 1, 3, 6000, 600, 2000, 3400),
    ]
    categories = fetch(
        rolled_up,
        f"SELECT event_date, category, currency, {ITEMS} FROM analytics.category_sales_daily ORDER BY 1, 2, 3",
    )
    assert categories == sorted((d, c, cur, *m) for d, _, c, cur, *m in products)
    hourly = fetch(
        rolled_up,
        "SELECT hour_start, product_id, currency, units, net_sales FROM analytics.product_sales_hourly"
        " WHERE event_date = %s ORDER BY 1, 2",
        D2,
    )
    assert hourly == [
        (at(D2, "00:00:00"), "p3", "JPY", 3, 5400),
        (at(D2, "08:00:00"), "p1", "USD", 0, -4500),
        (at(D2, "09:00:00"), "p3", "JPY", 0, -2000),
    ]
    buckets = fetch(
        rolled_up,
        "SELECT bucket_start, category, country, channel, device, orders, units FROM analytics.category_sales_15m"
        " WHERE event_date = %s AND currency = 'USD' ORDER BY 2",
        D1,
    )
    assert buckets == [
        (at(D1, "10:00:00"), "hats", "US", "organic_search", "desktop", 1, 1),
        (at(D1, "10:00:00"), "shoes", "US", "organic_search", "desktop", 1, 2),
    ]


def test_net_sales_over_products_equal_the_days_net_sales(rolled_up: str) -> None:
    mismatches = fetch(
        rolled_up,
        """
        SELECT s.event_date, s.currency FROM analytics.sales_daily s
        LEFT JOIN (
            SELECT event_date, currency, sum(net_sales) AS net FROM analytics.product_sales_daily GROUP BY 1, 2
        ) p USING (event_date, currency)
        WHERE coalesce(p.net, 0) <> s.net_sales
        """,
    )
    assert mismatches == []


def test_customers_first_time_and_returning(rolled_up: str) -> None:
    rows = fetch(
        rolled_up,
        "SELECT event_date, customers, first_time_customers, returning_customers, orders, first_time_orders,"
        " returning_orders FROM analytics.customers_daily ORDER BY 1",
    )
    assert rows == [(D1, 3, 2, 1, 3, 2, 1), (D2, 1, 0, 1, 1, 0, 1)]


def test_funnel_by_session_dimensions(rolled_up: str) -> None:
    rows = fetch(
        rolled_up,
        "SELECT event_date, country, channel, device, sessions, product_view_sessions, cart_sessions,"
        " checkout_sessions, purchase_sessions FROM analytics.funnel_daily ORDER BY 1, 2, 3",
    )
    assert rows == [
        (D1, "DE", "direct", "tablet", 1, 0, 0, 0, 1),
        (D1, "GB", "referral", "desktop", 1, 0, 0, 0, 0),
        (D1, "JP", "email", "mobile", 1, 0, 0, 0, 1),
        (D1, "US", "organic_search", "desktop", 1, 1, 1, 1, 1),
        (D1, "US", "social", "mobile", 1, 0, 1, 0, 0),
        (D2, "JP", "email", "mobile", 1, 0, 0, 0, 1),
        (D2, "US", "organic_search", "desktop", 1, 0, 0, 0, 0),
    ]
    # cart abandonment on D1: 2 cart sessions, 1 purchased -> 0.5
    assert metrics.cart_abandonment_rate(purchase_sessions=1, cart_sessions=2) == Decimal("0.5")
    assert metrics.conversion_rate(purchase_sessions=3, sessions=5) == Decimal("0.6")
    assert metrics.cart_abandonment_rate(purchase_sessions=0, cart_sessions=0) is None
    # more purchase than cart sessions in a day (carts filled before midnight): negative, as docs/api.md says
    assert metrics.cart_abandonment_rate(purchase_sessions=3, cart_sessions=2) == Decimal("-0.5")


def test_users_daily(rolled_up: str) -> None:
    rows = fetch(
        rolled_up,
        "SELECT event_date, dau, wau, mau, sessions, page_views, product_views FROM analytics.users_daily ORDER BY 1",
    )
    # D1: u1..u5 (u5 only through the late page view); D2: u1 (refund) and u2; WAU/MAU of D2 reach back to D1
    assert rows == [(D1, 5, 5, 5, 5, 3, 1), (D2, 2, 5, 5, 2, 0, 0)]


def _minute(url: str, instant: dt.datetime) -> tuple[int, ...]:
    rows = fetch(
        url,
        "SELECT users_1m, users_5m, users_15m, users_30m, users_60m FROM analytics.active_users_minute"
        " WHERE minute_start = %s",
        instant,
    )
    assert len(rows) == 1, instant
    return rows[0]


def test_active_users_sliding_windows(rolled_up: str) -> None:
    (_, d1_rows, d1_last), (_, d2_rows, d2_last) = fetch(
        rolled_up,
        "SELECT event_date, count(*), max(minute_start) FROM analytics.active_users_minute GROUP BY 1 ORDER BY 1",
    )
    assert (d1_rows, d1_last) == (1440, at(D1, "23:59:00"))
    assert (d2_rows, d2_last) == (541, at(D2, "09:00:00"))  # up to the minute of the day's newest event
    assert _minute(rolled_up, at(D1, "10:02:00")) == (2, 2, 2, 2, 2)  # u1 and u4 in the same minute
    assert _minute(rolled_up, at(D1, "10:04:00")) == (1, 2, 2, 2, 2)
    assert _minute(rolled_up, at(D1, "11:03:00"))[4] == 1  # u1's 10:04 is the first minute of this 60-minute window
    assert _minute(rolled_up, at(D1, "11:04:00"))[4] == 0
    # windows reach across midnight into D1: u2 (23:50) and u5 (23:59)
    assert _minute(rolled_up, at(D2, "00:00:00")) == (0, 1, 2, 2, 2)
    # 15 min (23:56-00:10) holds u5 and u2; u2, active at 23:50 and at 00:10, counts once in 30 and 60 min
    assert _minute(rolled_up, at(D2, "00:10:00")) == (1, 1, 2, 2, 2)
    assert _minute(rolled_up, at(D2, "01:09:00"))[4] == 1
    assert _minute(rolled_up, at(D2, "01:10:00"))[4] == 0


def test_ingest_quality_by_received_day(rolled_up: str) -> None:
    assert fetch(rolled_up, "SELECT * FROM analytics.quarantine_daily") == [(D2, "invalid_json", 2)]
    assert fetch(rolled_up, "SELECT * FROM analytics.late_events_daily") == [(D2, BEYOND_HORIZON_DAY, "page_view", 1)]


def test_ledger_records_source_and_watermark(rolled_up: str, scenario_lake: Path) -> None:
    ledger = {
        (asset, day): (rows, version, offsets, newest, run)
        for asset, day, rows, version, offsets, newest, run in fetch(
            rolled_up,
            "SELECT asset, partition_date, row_count, lake_version, source_offsets, max_event_ts, run_id"
            " FROM analytics.materializations",
        )
    }
    assert set(ledger) == {(a, d) for a in catalog.EVENT_ROLLUPS for d in (D1, D2)} | {
        ("fx_rates", D1),
        ("fx_rates", D2),
        ("ingest_quality", D2),
    }
    rows, version, offsets, newest, run = ledger[("sales", D1)]
    assert rows == 4 + 4 + 3 + 4 + 1  # 15m, hourly, daily, hourly reporting, daily reporting
    assert version == table_version(scenario_lake) == 4  # the pinned table version (all 4 commits read)
    assert offsets["lake_applied_seq"] == 4
    d1 = read_partition(scenario_lake, LakeTable.EVENTS, D1)
    assert len(d1.files) == 2  # the base commit's file and the late page view's
    assert offsets["partitions"] == {"events/2025-03-10": d1.content_key}
    assert newest == at(D1, "23:59:30") and run == "test"
    _, users_version, users_offsets, _, _ = ledger[("users", D2)]
    assert users_version == 4 and users_offsets["partitions"]["events/2025-03-10"] == d1.content_key  # WAU reads D1
    _, quality_version, _, quality_newest, _ = ledger[("ingest_quality", D2)]
    assert quality_version == 4  # the quarantine commit
    assert quality_newest == at(D2, "03:00:00")  # newest broker timestamp received that day


def test_a_day_without_events_is_written_empty_with_its_ledger_row(scenario_lake: Path, database: str) -> None:
    empty_day = D2 + dt.timedelta(days=1)
    write_fx(database, [empty_day])
    run_event_rollups(scenario_lake, database, [empty_day], catalog.EVENT_ROLLUPS, "USD")
    run_partition_writes(database, [empty_day], lambda day: quality_write(scenario_lake, day))
    ledger = fetch(
        database,
        "SELECT asset, row_count, lake_version, max_event_ts FROM analytics.materializations"
        " WHERE partition_date = %s AND asset <> 'fx_rates' ORDER BY 1",
        empty_day,
    )
    assert ledger == [
        (asset, 1 if asset == "users" else 0, 4, None)
        for asset in sorted((*catalog.EVENT_ROLLUPS, catalog.INGEST_QUALITY))
    ]  # every rollup records the table version it read (4); users has a row: WAU/MAU of the trailing days
    # DAU and counts 0, but WAU/MAU are defined without events of the day: the users of the trailing 7/30 days
    assert fetch(
        database,
        "SELECT dau, wau, mau, sessions, page_views, product_views FROM analytics.users_daily WHERE event_date = %s",
        empty_day,
    ) == [(0, 5, 5, 0, 0, 0)]
