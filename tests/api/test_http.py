"""HTTP behaviour: freshness metadata, ETag/304 and caching, NOTIFY invalidation, auth, rate limits,
validation errors, operational endpoints and database failures."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx
import psycopg
import pytest

from shoppulse.settings import Settings
from tests.api.conftest import api_client, scratch_database
from tests.api.seed import NOW, Sale, insert, sales_tables, seed, ts

DAY = {"from": "2025-03-09", "to": "2025-03-10"}


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    """Poll until `condition()` holds (asynchronous effects such as a NOTIFY reaching the listener)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def listener_connected(client: httpx.Client) -> bool:
    return client.get("/health/freshness").json()["data"]["notify_listener_connected"]


# ------------------------------------------------------------------------------------------------ meta


def test_meta_of_closed_materialized_partitions(client: httpx.Client) -> None:
    response = client.get("/analytics/sales/timeseries", params=DAY)
    assert response.json()["meta"] == {
        "as_of": "2025-03-11T01:00:00Z",  # materialization of the 03-10 partition
        "watermark": "2025-03-10T23:59:59Z",
        "complete": True,
        "tz": "UTC",
        "currency": "USD",
        "currency_exponent": 2,
    }
    assert response.headers["cache-control"] == "public, max-age=300"


def test_a_local_day_reads_both_utc_partitions_it_spans(client: httpx.Client) -> None:
    meta = client.get("/analytics/sales/daily", params={"from": "2025-03-09", "to": "2025-03-09", "tz": "Asia/Tokyo"})
    # 03-09 in Tokyo is [03-08 15:00Z, 03-09 15:00Z): partitions 03-08 and 03-09
    assert meta.json()["meta"]["as_of"] == "2025-03-10T01:00:00Z"
    assert meta.json()["meta"]["watermark"] == "2025-03-09T23:59:59Z"


@pytest.mark.parametrize(
    ("window", "why"),
    [
        ({"from": "2025-03-24", "to": "2025-03-26"}, "the 03-25 sales partition is not materialized"),
        ({"from": "2025-03-29", "to": "2025-03-29"}, "03-29 closes 72 h after its end, after NOW"),
    ],
)
def test_meta_incomplete(client: httpx.Client, window: dict[str, str], why: str) -> None:
    response = client.get("/analytics/sales/timeseries", params=window)
    assert response.json()["meta"]["complete"] is False, why
    assert response.headers["cache-control"] == "public, max-age=5"


# ------------------------------------------------------------------------------------- ETag and caching


def test_etag_and_304_on_the_cached_path(client: httpx.Client) -> None:
    params = {"from": "2025-03-05", "to": "2025-03-07"}
    first = client.get("/analytics/sales/timeseries", params=params)
    etag = first.headers["etag"]
    assert etag.startswith('"') and etag.endswith('"')
    again = client.get("/analytics/sales/timeseries", params=params)
    assert again.headers["x-cache"] == "hit" and again.content == first.content and again.headers["etag"] == etag
    for validator in (etag, f"W/{etag}", f'"other", {etag}', "*"):
        response = client.get("/analytics/sales/timeseries", params=params, headers={"If-None-Match": validator})
        assert response.status_code == 304, validator
        assert response.content == b""
        assert response.headers["etag"] == etag
        assert response.headers["cache-control"] == "public, max-age=300"
    stale = client.get("/analytics/sales/timeseries", params=params, headers={"If-None-Match": '"stale"'})
    assert stale.status_code == 200 and stale.content == first.content


def test_304_on_the_computing_path(client: httpx.Client, make_client: Any) -> None:
    params = {"from": "2025-03-15", "to": "2025-03-15", "metric": "units"}
    etag = client.get("/analytics/products/top", params=params).headers["etag"]
    fresh = make_client()  # empty cache: this request computes the answer
    response = fresh.get("/analytics/products/top", params=params, headers={"If-None-Match": etag})
    assert (response.status_code, response.headers["x-cache"], response.headers["etag"]) == (304, "miss", etag)


def test_parameter_order_does_not_matter_but_repeated_parameters_keep_theirs(client: httpx.Client) -> None:
    one = client.get("/analytics/sales/timeseries?from=2025-03-12&to=2025-03-12&currency=EUR")
    two = client.get("/analytics/sales/timeseries?currency=EUR&to=2025-03-12&from=2025-03-12")
    assert two.headers["x-cache"] == "hit" and two.content == one.content
    last_wins = client.get("/analytics/sales/timeseries?from=2025-03-12&to=2025-03-12&currency=EUR&currency=JPY")
    other_last = client.get("/analytics/sales/timeseries?from=2025-03-12&to=2025-03-12&currency=JPY&currency=EUR")
    assert last_wins.json()["meta"]["currency"] == "JPY"
    assert other_last.json()["meta"]["currency"] == "EUR"


def test_notify_invalidates_exactly_the_answers_of_that_partition(stack: Any, settings: Settings) -> None:
    with scratch_database(settings, "test_api_notify") as url:
        seed(url)
        with api_client(url) as client:
            wait_for(lambda: listener_connected(client), "the NOTIFY listener to connect")
            march_12 = {"from": "2025-03-12", "to": "2025-03-12"}
            march_5 = {"from": "2025-03-05", "to": "2025-03-05"}
            before = client.get("/analytics/sales/timeseries", params=march_12).json()
            client.get("/analytics/sales/timeseries", params=march_5)
            assert client.get("/analytics/sales/timeseries", params=march_12).headers["x-cache"] == "hit"
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute("DELETE FROM analytics.sales_daily WHERE event_date = '2025-03-12'")
                insert(conn, "sales_daily", sales_tables([Sale(ts("2025-03-12T08:00Z"), 12345)])["sales_daily"])
                assert client.get("/analytics/sales/timeseries", params=march_12).headers["x-cache"] == "hit"
                conn.execute("NOTIFY shoppulse_materialized, 'sales:2025-03-12'")

            def refreshed() -> bool:
                return client.get("/analytics/sales/timeseries", params=march_12).headers["x-cache"] == "miss"

            wait_for(refreshed, "the notification to evict the 03-12 answer")
            after = client.get("/analytics/sales/timeseries", params=march_12).json()
            assert before["data"]["totals"]["gross_sales"] == 2004
            assert after["data"]["totals"]["gross_sales"] == 12345
            assert client.get("/analytics/sales/timeseries", params=march_5).headers["x-cache"] == "hit"


# ---------------------------------------------------------------------------------------- auth, limits


def test_api_keys(make_client: Any) -> None:
    client = make_client(api_keys="key-one, key-two")
    missing = client.get("/analytics/sales/daily", params=DAY)
    assert missing.status_code == 401 and "X-API-Key" in missing.json()["detail"]
    assert missing.headers["www-authenticate"].startswith("APIKey")
    assert client.get("/analytics/sales/daily", params=DAY, headers={"X-API-Key": "nope"}).status_code == 403
    ok = client.get("/analytics/sales/daily", params=DAY, headers={"X-API-Key": "key-two"})
    assert ok.status_code == 200 and ok.headers["cache-control"].startswith("private")
    cached = client.get("/analytics/sales/daily", params=DAY)  # a cached answer still needs a key
    assert cached.status_code == 401
    assert client.get("/health/freshness").status_code == 401
    assert client.get("/health").status_code == 200
    assert client.get("/metrics").status_code == 200
    assert "X-API-Key" in str(client.get("/openapi.json").json()["components"]["securitySchemes"])


def test_rate_limit_per_key_with_retry_after(make_client: Any) -> None:
    client = make_client(api_keys="a,b", api_rate_limit="3/hour")  # an hour: no window boundary mid-test
    statuses = [
        client.get("/analytics/sales/daily", params=DAY, headers={"X-API-Key": "a"}).status_code for _ in range(4)
    ]
    assert statuses == [200, 200, 200, 429]
    refused = client.get("/analytics/sales/daily", params=DAY, headers={"X-API-Key": "a"})
    assert refused.status_code == 429
    assert 1 <= int(refused.headers["retry-after"]) <= 3600
    assert client.get("/analytics/sales/daily", params=DAY, headers={"X-API-Key": "b"}).status_code == 200


def test_rate_limit_per_client_without_keys(make_client: Any) -> None:
    client = make_client(api_rate_limit="2/hour")
    assert [client.get("/analytics/funnel").status_code for _ in range(3)] == [200, 200, 429]
    assert client.get("/health").status_code == 200  # liveness is never limited


# ---------------------------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("path", "params", "parameter"),
    [
        ("/analytics/sales/timeseries", {"tz": "Mars/Olympus_Mons"}, "tz"),
        ("/analytics/sales/timeseries", {"from": "2025-03-10", "to": "2025-03-09"}, "from"),
        ("/analytics/sales/timeseries", {"granularity": "hour", "from": "2025-01-01", "to": "2025-02-01"}, "to"),
        ("/analytics/sales/timeseries", {"from": "2024-01-01", "to": "2025-01-01"}, "to"),
        ("/analytics/sales/timeseries", {"from": "1999-12-31", "to": "2000-01-01"}, "from"),
        (
            "/analytics/sales/timeseries",
            {"from": "2000-01-01", "to": "2000-01-02", "compare": "previous_period"},
            "compare",
        ),
        ("/analytics/sales/timeseries", {"granularity": "year"}, "granularity"),
        ("/analytics/sales/timeseries", {"from": "2025-02-30"}, "from"),
        ("/analytics/sales/timeseries", {"currency": "XYZ"}, "currency"),
        ("/analytics/sales/timeseries", {"country": "usa"}, "country"),
        ("/analytics/sales/timeseries", {"granularty": "hour"}, "granularty"),
        ("/analytics/sales/breakdown", {}, "dimension"),
        ("/analytics/products/top", {"limit": 101}, "limit"),
        ("/analytics/products/top", {"limit": 0}, "limit"),
        ("/analytics/products/top", {"offset": 10001}, "offset"),
        ("/analytics/products/top", {"metric": "profit"}, "metric"),
        ("/analytics/users/active/timeseries", {"minutes": 1441}, "minutes"),
        ("/analytics/funnel", {"tz": "UTC"}, "tz"),
    ],
)
def test_invalid_parameters_are_422_naming_the_parameter(
    client: httpx.Client, path: str, params: dict[str, Any], parameter: str
) -> None:
    response = client.get(path, params=params)
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert detail[0]["loc"] == ["query", parameter]
    assert detail[0]["msg"]


def test_database_without_serving_tables_is_503_and_liveness_stays_up(stack: Any, settings: Settings) -> None:
    with scratch_database(settings, "test_api_empty") as url:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("DROP SCHEMA analytics CASCADE")
        with api_client(url) as client:
            response = client.get("/analytics/sales/daily", params=DAY)
            assert response.status_code == 503
            assert "migrations" in response.json()["detail"]
            assert response.headers["retry-after"] == "5"
            assert client.get("/health").status_code == 200


def test_missing_fx_rate_is_503_only_when_a_conversion_needs_it(stack: Any, settings: Settings) -> None:
    with scratch_database(settings, "test_api_fx") as url:
        with psycopg.connect(url, autocommit=True) as conn:
            for table, rows in sales_tables([Sale(ts("2025-03-12T10:00Z"), 900, currency="EUR")]).items():
                insert(conn, table, rows)
        with api_client(url) as client:
            assert client.get("/analytics/sales/daily", params=DAY).status_code == 200  # no EUR rows in range
            response = client.get("/analytics/sales/daily", params={"from": "2025-03-12", "to": "2025-03-12"})
            assert response.status_code == 503 and "fx_rates" in response.json()["detail"]
            native = client.get(
                "/analytics/sales/daily", params={"from": "2025-03-12", "to": "2025-03-12", "currency": "EUR"}
            )
            assert native.status_code == 200 and native.json()["data"]["totals"]["gross_sales"] == 900


# ---------------------------------------------------------------------------------------- operations


def test_health(client: httpx.Client) -> None:
    response = client.get("/health")
    assert response.json() == {"status": "ok"}


def test_freshness_reports_every_asset_and_the_consumer_lag(client: httpx.Client) -> None:
    data = client.get("/health/freshness").json()["data"]
    assets = {asset["asset"]: asset for asset in data["assets"]}
    assert set(assets) == {"fx_rates", "sales", "products", "users", "funnel", "customers", "ingest_quality"}
    assert assets["sales"]["latest_partition"] == "2025-03-31"
    assert assets["sales"]["partitions"] == 30  # 03-25 is missing
    assert assets["users"]["watermark"] == "2025-04-01T00:01:30Z"
    assert assets["users"]["watermark_age_seconds"] == (NOW - ts("2025-04-01T00:01:30Z")).total_seconds()
    assert data["ingest"]["source"] == "broker"  # lag measured at the broker: tests/api/test_readiness.py
    assert data["ingest"]["age_seconds"] == 5.0  # the drain's last report (seeded) is still shown
    assert client.get("/health/freshness").headers["cache-control"] == "no-cache"


def test_metrics_count_requests_and_cache_lookups(client: httpx.Client) -> None:
    client.get("/analytics/customers/returning")
    client.get("/analytics/customers/returning")
    text = client.get("/metrics").text
    assert 'shoppulse_api_requests_total{route="/analytics/customers/returning",status="200"}' in text
    assert 'shoppulse_api_cache_lookups_total{result="hit"}' in text
    assert "shoppulse_api_request_duration_seconds_bucket" in text
    assert "shoppulse_api_notify_listener_up" in text
    openmetrics = client.get("/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"})
    assert openmetrics.headers["content-type"].startswith("application/openmetrics-text")
    assert openmetrics.text.rstrip().endswith("# EOF")


def test_openapi_documents_every_parameter_and_field(client: httpx.Client) -> None:
    document = client.get("/openapi.json").json()
    for path, item in document["paths"].items():
        for parameter in item["get"].get("parameters", []):
            assert parameter.get("description"), (path, parameter["name"])
            assert parameter["schema"].get("examples") or parameter.get("examples"), (path, parameter["name"])
    for name, component in document["components"]["schemas"].items():
        if name.startswith(("HTTPValidationError", "ValidationError")):
            continue  # FastAPI's own
        for field, spec in component.get("properties", {}).items():
            assert spec.get("description"), (name, field)
            has_example = "examples" in spec or "$ref" in spec or spec.get("type") == "array"
            has_example = has_example or any("$ref" in option for option in spec.get("anyOf", []))
            assert has_example, (name, field)
    assert client.get("/docs").status_code == 200
