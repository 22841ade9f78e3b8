"""Users, funnel, carts and customers against the seeded rows."""

from __future__ import annotations

from typing import Any

import httpx
import pytest


def get(client: httpx.Client, path: str, **params: Any) -> dict[str, Any]:
    response = client.get(path, params=params)
    assert response.status_code == 200, response.text
    return response.json()


def test_active_users_now_is_the_newest_complete_minute(client: httpx.Client) -> None:
    # 00:01 has a row, but the users watermark (00:01:30) has not passed its end yet
    body = get(client, "/analytics/users/active")
    assert body["data"] == {
        "minute_start": "2025-04-01T00:00:00Z",
        "window_minutes": 5,
        "active_users": 13,
        "windows": {"1m": 6, "5m": 13, "15m": 23, "30m": 33, "60m": 43},
    }
    assert body["meta"]["watermark"] == "2025-04-01T00:01:30Z"
    assert body["meta"]["complete"] is False
    assert get(client, "/analytics/users/active", window=60)["data"]["active_users"] == 43


def test_active_users_series_marks_minutes_without_a_row_as_null(client: httpx.Client) -> None:
    data = get(client, "/analytics/users/active/timeseries", window=5, minutes=5)["data"]
    assert (data["from"], data["to"]) == ("2025-03-31T23:56:00Z", "2025-04-01T00:00:00Z")
    assert [point["active_users"] for point in data["points"]] == [None, 10, 11, 12, 13]


@pytest.mark.parametrize("window", [1, 5, 15, 30, 60])
def test_seed_active_users_equals_the_last_point_of_the_series(client: httpx.Client, window: int) -> None:
    now = get(client, "/analytics/users/active", window=window)["data"]
    last = get(client, "/analytics/users/active/timeseries", window=window, minutes=1)["data"]["points"][-1]
    assert (last["minute_start"], last["active_users"]) == (now["minute_start"], now["active_users"])


def test_active_window_must_be_a_precomputed_one(client: httpx.Client) -> None:
    response = client.get("/analytics/users/active", params={"window": 7})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["query", "window"]


def test_users_daily_is_null_on_days_without_a_row(client: httpx.Client) -> None:
    body = get(client, "/analytics/users/daily", **{"from": "2025-03-10", "to": "2025-03-12"})
    assert body["data"]["days"] == [
        {"date": "2025-03-10", "dau": 100, "wau": 500, "mau": 1500, "sessions": 150, "page_views": 1000,
         "product_views": 400},
        {"date": "2025-03-11", "dau": 120, "wau": 520, "mau": 1510, "sessions": 170, "page_views": 1100,
         "product_views": 420},
        {"date": "2025-03-12", "dau": None, "wau": None, "mau": None, "sessions": None, "page_views": None,
         "product_views": None},
    ]  # fmt: skip
    assert body["meta"]["tz"] == "UTC" and body["meta"]["currency"] is None


def test_funnel_sums_stages_and_divides_sums(client: httpx.Client) -> None:
    data = get(client, "/analytics/funnel", **{"from": "2025-03-10", "to": "2025-03-11"})["data"]
    assert [(stage["stage"], stage["sessions"]) for stage in data["stages"]] == [
        ("sessions", 230),
        ("product_view_sessions", 120),
        ("cart_sessions", 60),
        ("checkout_sessions", 30),
        ("purchase_sessions", 17),
    ]
    assert data["stages"][0]["rate_from_previous"] is None
    assert data["stages"][2]["rate_from_previous"] == pytest.approx(60 / 120)
    assert data["stages"][4]["rate_from_start"] == pytest.approx(17 / 230)
    assert data["conversion_rate"] == pytest.approx(17 / 230)


def test_funnel_filters(client: httpx.Client) -> None:
    data = get(client, "/analytics/funnel", **{"from": "2025-03-10", "to": "2025-03-11"}, country="DE")["data"]
    assert [stage["sessions"] for stage in data["stages"]] == [50, 20, 10, 5, 2]
    empty = get(client, "/analytics/funnel", **{"from": "2025-03-10", "to": "2025-03-11"}, device="tablet")["data"]
    assert [stage["sessions"] for stage in empty["stages"]] == [0] * 5
    assert empty["conversion_rate"] is None


def test_cart_abandonment_is_a_ratio_of_sums_not_an_average_of_ratios(client: httpx.Client) -> None:
    data = get(client, "/analytics/carts/abandonment", **{"from": "2025-03-10", "to": "2025-03-12"})["data"]
    assert [(d["date"], d["cart_sessions"], d["purchase_sessions"]) for d in data["days"]] == [
        ("2025-03-10", 40, 12),
        ("2025-03-11", 20, 5),
        ("2025-03-12", 0, 0),
    ]
    assert [d["abandonment_rate"] for d in data["days"]] == [pytest.approx(0.7), pytest.approx(0.75), None]
    assert data["totals"]["abandonment_rate"] == pytest.approx(1 - 17 / 60)  # not (0.7 + 0.75) / 2


def test_returning_customers(client: httpx.Client) -> None:
    data = get(client, "/analytics/customers/returning", **{"from": "2025-03-10", "to": "2025-03-11"})["data"]
    assert [d["returning_customer_rate"] for d in data["days"]] == [pytest.approx(0.4), pytest.approx(20 / 30)]
    assert data["totals"] == {
        "customers": 40,
        "first_time_customers": 16,
        "returning_customers": 24,
        "orders": 47,
        "first_time_orders": 16,
        "returning_orders": 31,
        "returning_customer_rate": pytest.approx(0.6),
    }
