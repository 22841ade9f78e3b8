"""Sales endpoints against the seeded rows: time zones and DST, currencies and rounding, filters,
breakdowns, top products, and the seed endpoints agreeing with the general ones."""

from __future__ import annotations

from typing import Any

import httpx
import psycopg
import pytest

from shoppulse.settings import Settings
from tests.api.conftest import api_client, scratch_database
from tests.api.seed import FX_RATES, Sale, insert, sales_tables, ts


def get(client: httpx.Client, path: str, **params: Any) -> dict[str, Any]:
    response = client.get(path, params=params)
    assert response.status_code == 200, response.text
    return response.json()


def series(client: httpx.Client, **params: Any) -> list[dict[str, Any]]:
    return get(client, "/analytics/sales/timeseries", **params)["data"]["series"]


def by_bucket(points: list[dict[str, Any]], field: str = "gross_sales") -> dict[str, Any]:
    return {point["bucket"]: point[field] for point in points}


# ------------------------------------------------------------------------------------- time zones, DST


def test_new_york_spring_forward_day_has_23_hours_and_its_own_sales(client: httpx.Client) -> None:
    body = get(client, "/analytics/sales/daily", **{"from": "2025-03-08", "to": "2025-03-10"}, tz="America/New_York")
    days = {day["date"]: day for day in body["data"]["days"]}
    assert [days[d]["gross_sales"] for d in ("2025-03-08", "2025-03-09", "2025-03-10")] == [1000, 14000, 6070]
    march_9 = days["2025-03-09"]
    assert (march_9["start"], march_9["end"]) == ("2025-03-09T00:00:00-05:00", "2025-03-10T00:00:00-04:00")
    assert march_9 | {"date": None, "start": None, "end": None} == {
        "date": None,
        "start": None,
        "end": None,
        "orders": 4,
        "units": 4,
        "gross_sales": 14000,
        "discounts": 400,
        "returns": 1000,
        "net_sales": 12600,
        "shipping": 500,
        "taxes": 250,
        "total_sales": 13350,
        "aov": 3400,
    }
    assert body["meta"]["tz"] == "America/New_York"


def test_hourly_buckets_skip_the_missing_hour_on_spring_forward(client: httpx.Client) -> None:
    points = series(client, granularity="hour", **{"from": "2025-03-09", "to": "2025-03-09"}, tz="America/New_York")
    expected_labels = [f"2025-03-09T{hour:02d}:00:00-05:00" for hour in (0, 1)] + [
        f"2025-03-09T{hour:02d}:00:00-04:00" for hour in range(3, 24)
    ]
    assert [point["bucket"] for point in points] == expected_labels
    values = by_bucket(points)
    assert values["2025-03-09T00:00:00-05:00"] == 2000
    assert values["2025-03-09T01:00:00-05:00"] == 3000
    assert values["2025-03-09T03:00:00-04:00"] == 4000
    assert values["2025-03-09T23:00:00-04:00"] == 5000
    assert sum(values.values()) == 14000  # every other hour is gap-filled with 0


def test_hourly_buckets_repeat_the_fall_back_hour(client: httpx.Client) -> None:
    body = get(
        client,
        "/analytics/sales/timeseries",
        granularity="hour",
        **{"from": "2025-11-02", "to": "2025-11-02"},
        tz="America/New_York",
    )
    points = body["data"]["series"]
    assert len(points) == 25
    values = by_bucket(points)
    assert values["2025-11-02T01:00:00-04:00"] == 100
    assert values["2025-11-02T01:00:00-05:00"] == 200
    assert body["meta"]["complete"] is False and body["meta"]["as_of"] is None  # no ledger rows in November


@pytest.mark.parametrize(
    ("tz", "expected"),
    [
        ("UTC", {"2025-03-20": 1500, "2025-03-21": 0}),
        ("Asia/Kolkata", {"2025-03-20": 700, "2025-03-21": 800}),  # +05:30: midnight is 18:30Z
        ("Asia/Kathmandu", {"2025-03-20": 0, "2025-03-21": 1500}),  # +05:45: midnight is 18:15Z
    ],
)
def test_days_follow_half_and_quarter_hour_offsets(client: httpx.Client, tz: str, expected: dict[str, int]) -> None:
    points = series(client, granularity="day", **{"from": "2025-03-20", "to": "2025-03-21"}, tz=tz)
    assert by_bucket(points) == expected


def test_hours_in_a_half_hour_zone_start_at_half_past_utc(client: httpx.Client) -> None:
    points = series(client, granularity="hour", **{"from": "2025-03-21", "to": "2025-03-21"}, tz="Asia/Kolkata")
    assert len(points) == 24
    assert points[0]["start"] == "2025-03-21T00:00:00+05:30"
    assert points[0]["gross_sales"] == 800
    assert sum(point["gross_sales"] for point in points) == 800


def test_weeks_are_iso_weeks_starting_monday_with_clipped_edges(client: httpx.Client) -> None:
    points = series(client, granularity="week", **{"from": "2025-03-05", "to": "2025-03-16"})
    assert [(p["bucket"], p["start"], p["end"]) for p in points] == [
        ("2025-03-03", "2025-03-05T00:00:00Z", "2025-03-10T00:00:00Z"),
        ("2025-03-10", "2025-03-10T00:00:00Z", "2025-03-17T00:00:00Z"),
    ]
    # week 1: 5 + 15 cents on 03-05, 50 on 03-08, 10000 on 03-09; week 2: 11070 + 2003.75 + 18000
    assert [p["gross_sales"] for p in points] == [10070, 31074]


def test_months_gap_fill_empty_buckets_with_zeros(client: httpx.Client) -> None:
    points = series(client, granularity="month", **{"from": "2025-02-20", "to": "2025-03-05"})
    assert [(p["bucket"], p["orders"], p["gross_sales"], p["aov"]) for p in points] == [
        ("2025-02-01", 0, 0, None),
        ("2025-03-01", 2, 20, 10),
    ]


# ------------------------------------------------------------------------------------------ currencies


def test_conversion_uses_each_days_rate_and_rounds_each_output_value_once(client: httpx.Client) -> None:
    body = get(client, "/analytics/sales/timeseries", granularity="hour", **{"from": "2025-03-12", "to": "2025-03-12"})
    values = by_bucket(body["data"]["series"])
    # EUR 920 @0.92 and JPY 1500 @150 are $10 each; GBP 1p @0.8 = 1.25c -> 1; 2p = 2.5c -> 2 (half-even)
    assert values["2025-03-12T10:00:00+00:00"] == 2000
    assert values["2025-03-12T11:00:00+00:00"] == 1
    assert values["2025-03-12T12:00:00+00:00"] == 2
    totals = body["data"]["totals"]
    assert totals["gross_sales"] == 2004  # 2003.75 rounded once, not 2000 + 1 + 2
    assert totals["aov"] == 501  # 2003.75 / 4 = 500.94
    assert body["meta"]["currency"] == "USD" and body["meta"]["currency_exponent"] == 2


@pytest.mark.parametrize(
    ("currency", "day", "hours", "total", "exponent"),
    [
        ("EUR", "2025-03-05", [4, 14], 18, 2),  # 4.5 -> 4, 13.5 -> 14, 18 exactly
        ("JPY", "2025-03-05", [8, 22], 30, 0),  # 7.5 -> 8, 22.5 -> 22, 30 exactly
        ("EUR", "2025-03-12", [1840, 1, 2], 1843, 2),  # 1840, 1.15, 2.3: 1843.45 -> 1843
    ],
)
def test_conversion_into_other_currencies_rounds_half_to_even(
    client: httpx.Client, currency: str, day: str, hours: list[int], total: int, exponent: int
) -> None:
    body = get(
        client,
        "/analytics/sales/timeseries",
        granularity="hour",
        **{"from": day, "to": day},
        currency=currency,
    )
    nonzero = [point["gross_sales"] for point in body["data"]["series"] if point["orders"]]
    assert nonzero == hours
    assert body["data"]["totals"]["gross_sales"] == total
    assert (body["meta"]["currency"], body["meta"]["currency_exponent"]) == (currency, exponent)


def test_native_currency_filter_keeps_only_that_currencys_sales(client: httpx.Client) -> None:
    points = series(client, **{"from": "2025-03-12", "to": "2025-03-12"}, native_currency="GBP")
    assert (points[0]["orders"], points[0]["gross_sales"]) == (2, 4)  # 3 pence = 3.75 cents


# --------------------------------------------------------------------------------------------- filters


@pytest.mark.parametrize(
    ("filters", "orders", "gross"),
    [
        ({"country": "DE"}, 1, 1000),
        ({"channel": "email"}, 2, 4),
        ({"device": "tablet"}, 1, 1000),
        ({"country": "GB", "channel": "email", "device": "desktop"}, 2, 4),
        ({"country": "US"}, 0, 0),
    ],
)
def test_dimension_filters(client: httpx.Client, filters: dict[str, str], orders: int, gross: int) -> None:
    points = series(client, **{"from": "2025-03-12", "to": "2025-03-12"}, **filters)
    assert (points[0]["orders"], points[0]["gross_sales"]) == (orders, gross)
    assert points[0]["shipping"] is not None


def test_category_filter_reads_order_lines_and_has_no_order_level_money(client: httpx.Client) -> None:
    totals = get(client, "/analytics/sales/timeseries", **{"from": "2025-03-09", "to": "2025-03-09"}, category="misc")[
        "data"
    ]["totals"]
    assert (totals["orders"], totals["gross_sales"], totals["net_sales"]) == (4, 10000, 9600)
    assert totals["shipping"] is None and totals["taxes"] is None and totals["total_sales"] is None


def test_compare_previous_period(client: httpx.Client) -> None:
    data = get(
        client, "/analytics/sales/timeseries", **{"from": "2025-03-10", "to": "2025-03-11"}, compare="previous_period"
    )["data"]
    assert (data["previous"]["from"], data["previous"]["to"]) == ("2025-03-08", "2025-03-09")
    assert [p["gross_sales"] for p in data["previous"]["series"]] == [50, 10000]
    assert data["totals"]["gross_sales"] == 11070  # 5000 + 6000 on 03-10, 70 on 03-11
    assert data["change"]["gross_sales"] == pytest.approx((11070 - 10050) / 10050)
    assert data["change"]["orders"] == pytest.approx((3 - 5) / 5)


# ------------------------------------------------------------------------------------------ breakdowns


def breakdown(client: httpx.Client, **params: Any) -> dict[str, Any]:
    return get(client, "/analytics/sales/breakdown", **params)["data"]


def test_breakdown_by_country_is_ordered_by_net_sales_then_value(client: httpx.Client) -> None:
    data = breakdown(client, dimension="country", **{"from": "2025-03-12", "to": "2025-03-12"})
    assert [(item["value"], item["net_sales"]) for item in data["items"]] == [("DE", 1000), ("JP", 1000), ("GB", 4)]
    assert data["totals"]["net_sales"] == 2004


def test_breakdown_by_native_currency(client: httpx.Client) -> None:
    data = breakdown(client, dimension="currency", **{"from": "2025-03-12", "to": "2025-03-12"}, currency="EUR")
    assert [(item["value"], item["gross_sales"]) for item in data["items"]] == [
        ("EUR", 920),
        ("JPY", 920),
        ("GBP", 3),
    ]


def test_breakdown_by_category(client: httpx.Client) -> None:
    data = breakdown(client, dimension="category", **{"from": "2025-03-15", "to": "2025-03-15"})
    assert [(item["value"], item["orders"], item["net_sales"]) for item in data["items"]] == [
        ("books", 2, 10000),
        ("toys", 3, 8000),
    ]
    assert data["items"][0]["shipping"] is None


def test_breakdown_across_local_days_combines_daily_rows_and_finer_edges(client: httpx.Client) -> None:
    # 03-08..03-10 in New York = [03-08 05:00Z, 03-11 04:00Z): two whole UTC days plus two edges.
    data = breakdown(client, dimension="category", **{"from": "2025-03-08", "to": "2025-03-10"}, tz="America/New_York")
    assert data["items"] == [data["items"][0]] and data["items"][0]["value"] == "misc"
    assert data["items"][0]["gross_sales"] == 21070  # 03-08 04:30Z (23:30 EST 03-07) is out, 03-11 03:00Z is in


# ---------------------------------------------------------------------------------------- top products


def top(client: httpx.Client, **params: Any) -> dict[str, Any]:
    return get(client, "/analytics/products/top", **{"from": "2025-03-15", "to": "2025-03-15"}, **params)["data"]


@pytest.mark.parametrize(
    ("metric", "ranking"),
    [
        ("net_sales", ["p1", "p2", "p4", "p3"]),  # three tie at $50.00 (p4 is EUR 46.00 @0.92)
        ("units", ["p2", "p3", "p1", "p4"]),
        ("orders", ["p3", "p1", "p2", "p4"]),
        ("gross_sales", ["p1", "p2", "p4", "p3"]),
    ],
)
def test_top_products_rank_by_metric_with_product_id_tie_breaks(
    client: httpx.Client, metric: str, ranking: list[str]
) -> None:
    data = top(client, metric=metric)
    assert [item["product_id"] for item in data["items"]] == ranking
    assert [item["rank"] for item in data["items"]] == [1, 2, 3, 4]
    assert data["total_products"] == 4


def test_top_products_values_and_paging(client: httpx.Client) -> None:
    data = top(client, limit=2, offset=1)
    assert [(i["rank"], i["product_id"], i["category"], i["net_sales"]) for i in data["items"]] == [
        (2, "p2", "toys", 5000),
        (3, "p4", "books", 5000),
    ]
    beyond = top(client, offset=10)
    assert beyond["items"] == [] and beyond["total_products"] == 4
    p3 = next(item for item in top(client)["items"] if item["product_id"] == "p3")
    assert (p3["orders"], p3["units"], p3["gross_sales"]) == (2, 3, 3000)


def test_top_products_filters(client: httpx.Client) -> None:
    assert [i["product_id"] for i in top(client, category="books")["items"]] == ["p1", "p4"]
    assert [i["product_id"] for i in top(client, native_currency="EUR", currency="EUR")["items"]] == ["p4"]
    assert top(client, native_currency="EUR", currency="EUR")["items"][0]["net_sales"] == 4600


def test_top_products_in_a_whole_hour_zone_and_refused_in_a_half_hour_zone(client: httpx.Client) -> None:
    assert [i["product_id"] for i in top(client, tz="America/New_York")["items"]] == ["p1", "p2", "p4", "p3"]
    response = client.get(
        "/analytics/products/top", params={"from": "2025-03-15", "to": "2025-03-15", "tz": "Asia/Kolkata"}
    )
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["query", "tz"]


# ----------------------------------------------------------------------------- seed endpoints = general


@pytest.mark.parametrize(
    "params",
    [
        {"from": "2025-03-08", "to": "2025-03-12", "tz": "America/New_York"},
        {"from": "2025-03-01", "to": "2025-03-31", "currency": "JPY"},
        {"from": "2025-03-20", "to": "2025-03-21", "tz": "Asia/Kolkata", "currency": "GBP"},
    ],
)
def test_sales_daily_equals_the_day_granularity_of_the_timeseries(client: httpx.Client, params: dict) -> None:
    daily = get(client, "/analytics/sales/daily", **params)
    general = get(client, "/analytics/sales/timeseries", granularity="day", **params)
    renamed = [
        {("bucket" if key == "date" else key): value for key, value in day.items()} for day in daily["data"]["days"]
    ]
    assert renamed == general["data"]["series"]
    assert daily["data"]["totals"] == general["data"]["totals"]
    assert daily["meta"] == general["meta"]


def test_seed_top_products_equals_the_net_sales_ranking(client: httpx.Client) -> None:
    params = {"from": "2025-03-15", "to": "2025-03-15", "limit": 3}
    seed = get(client, "/analytics/sales/top-products", **params)
    general = get(client, "/analytics/products/top", metric="net_sales", **params)
    assert seed == general
    assert len(seed["data"]["items"]) == 3


def test_seed_endpoints_default_to_today(make_client: Any) -> None:
    from tests.api.seed import ts

    client = make_client(now=ts("2025-03-15T20:00Z"))
    daily = get(client, "/analytics/sales/daily")["data"]
    assert (daily["from"], daily["to"], daily["totals"]["gross_sales"]) == ("2025-03-15", "2025-03-15", 18000)
    # 20:00Z on 03-15 is already 03-16 in Auckland: nothing sold there yet
    assert get(client, "/analytics/sales/daily", tz="Pacific/Auckland")["data"]["to"] == "2025-03-16"
    assert [i["product_id"] for i in get(client, "/analytics/sales/top-products")["data"]["items"]] == [
        "p1",
        "p2",
        "p4",
        "p3",
    ]


def test_category_breakdown_totals_count_each_order_once(stack: object, settings: Settings) -> None:
    """One order with lines in three categories: three rows of one order each, totals of one order
    (equal to the window's timeseries totals), and an AOV divided by that one order."""
    at = ts("2025-03-15T09:00Z")
    day, bucket = at.date(), at
    with scratch_database(settings, "test_category_totals") as url:
        with psycopg.connect(url) as conn:
            tables = sales_tables([Sale(at, 3000, units=3)])
            for name in ("sales_15m", "sales_hourly", "sales_daily"):
                insert(conn, name, tables[name])
            line = [1, 1, 1000, 0, 0, 1000]  # orders, units, gross, discounts, returns, net
            for category in ("books", "toys", "misc"):
                insert(conn, "category_sales_15m", [(day, bucket, "USD", category, "US", "direct", "desktop", *line)])
                insert(conn, "category_sales_daily", [(day, category, "USD", *line)])
            insert(conn, "fx_rates", FX_RATES)
        with api_client(url) as http:
            window = {"from": "2025-03-15", "to": "2025-03-15"}
            data = get(http, "/analytics/sales/breakdown", dimension="category", **window)["data"]
            timeseries = get(http, "/analytics/sales/timeseries", **window)["data"]["totals"]
    assert [(item["value"], item["orders"], item["net_sales"]) for item in data["items"]] == [
        ("books", 1, 1000),
        ("misc", 1, 1000),
        ("toys", 1, 1000),
    ]
    assert data["totals"] == timeseries
    assert (data["totals"]["orders"], data["totals"]["net_sales"], data["totals"]["aov"]) == (1, 3000, 3000)
