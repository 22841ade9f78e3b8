"""The dashboard and the API docs in a real browser (Chromium via Playwright) against the real API and PostgreSQL.

The page shows what the API answers: every card is compared with the API's answer for the same parameters.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import date
from decimal import Decimal
from typing import Any

import httpx
import polars as pl
import psycopg
import pytest
from playwright.sync_api import Page

from api.main import create_app
from shoppulse.rollups.catalog import TABLES
from shoppulse.rollups.writer import PartitionWrite, read_partition_rows, replace_partition
from shoppulse.settings import Settings
from tests.api.conftest import api_client, live_server, scratch_database
from tests.api.seed import NOW, seed
from tests.browser.conftest import PageProblems, screenshot

OpenPage = Callable[..., tuple[Page, PageProblems]]
SYMBOLS = {"USD": "$", "EUR": "€", "GBP": "£", "JPY": "¥"}
WINDOW = {"from": "2025-03-09", "to": "2025-03-15"}


def money_en_us(minor: int, currency: str, exponent: int) -> str:
    """What Intl.NumberFormat('en-US', {style: 'currency'}) shows for `minor` units (half-even never matters:
    the value is exact)."""
    major = Decimal(minor).scaleb(-exponent)
    sign = "-" if major < 0 else ""
    return f"{sign}{SYMBOLS[currency]}{abs(major):,.{exponent}f}"


@pytest.fixture(scope="module")
def seeded(stack: object, settings: Settings) -> Iterator[str]:
    with scratch_database(settings, "test_browser") as url:
        seed(url)
        with psycopg.connect(url, autocommit=True) as conn:  # one alert in the window, as the detector writes it
            conn.execute(
                "INSERT INTO analytics.alerts (id, rule, direction, hour_start, observed, baseline, score, severity,"
                " message) VALUES ('orders:2025-03-12T14Z:drop', 'orders', 'drop', '2025-03-12 14:00+00', 3, 31,"
                " -8.25, 'critical', 'Orders fell to 3 (usually 31 in this hour of the week)')"
            )
        yield url


@pytest.fixture(scope="module")
def client(seeded: str) -> Iterator[httpx.Client]:
    with api_client(seeded) as http:
        yield http


def wait_for_refresh(page: Page, after: int) -> None:
    page.wait_for_function(f"window.shoppulse && window.shoppulse.refreshes > {after} && !window.shoppulse.busy")


def refreshes(page: Page) -> int:
    return page.evaluate("window.shoppulse.refreshes")


def load(page: Page, base_url: str, query: str) -> None:
    page.goto(f"{base_url}/dashboard?{query}")
    wait_for_refresh(page, 0)
    page.wait_for_function("document.getElementById('live').dataset.state === 'on'")


def card(page: Page, name: str) -> tuple[str, str]:
    value = page.locator(f"[data-testid={name}]")
    return value.inner_text(), value.get_attribute("data-raw") or ""


def assert_cards_match_the_api(page: Page, client: httpx.Client, tz: str, currency: str) -> dict[str, Any]:
    params = {**WINDOW, "tz": tz, "currency": currency}
    sales = client.get("/analytics/sales/timeseries", params={**params, "compare": "previous_period"}).json()
    totals, meta = sales["data"]["totals"], sales["meta"]
    exponent = meta["currency_exponent"]
    assert meta["currency"] == currency
    for name in ("net_sales", "aov"):
        text, raw = card(page, name)
        assert raw == str(totals[name])
        assert text == money_en_us(totals[name], currency, exponent)
    assert card(page, "orders") == (f"{totals['orders']:,}", str(totals["orders"]))
    funnel = client.get("/analytics/funnel", params=WINDOW).json()["data"]
    text, raw = card(page, "conversion")
    assert float(raw) == funnel["conversion_rate"]
    assert text == f"{funnel['conversion_rate'] * 100:.2f}%"
    active = client.get("/analytics/users/active", params={"window": 5}).json()["data"]["active_users"]
    assert card(page, "active") == (f"{active:,}", str(active))
    return totals


def test_the_dashboard_shows_the_apis_numbers_without_errors(open_page: OpenPage, client: httpx.Client) -> None:
    page, problems = open_page()
    load(page, str(client.base_url), "from=2025-03-09&to=2025-03-15&tz=America/New_York&currency=EUR")
    totals = assert_cards_match_the_api(page, client, "America/New_York", "EUR")
    assert totals["net_sales"] > 0 and "." in card(page, "net_sales")[0]  # EUR: two decimals
    change = client.get(
        "/analytics/sales/timeseries",
        params={**WINDOW, "tz": "America/New_York", "currency": "EUR", "compare": "previous_period"},
    ).json()["data"]["change"]["net_sales"]
    shown_change = page.locator("#card-net_sales .change").inner_text()
    assert f"{abs(change) * 100:,.1f}%" in shown_change
    # panels filled from the same answers
    top = client.get("/analytics/products/top", params={**WINDOW, "tz": "America/New_York", "currency": "EUR"})
    first_product = top.json()["data"]["items"][0]["product_id"]
    assert page.locator("#products tbody tr").first.locator("td").nth(1).inner_text() == first_product
    assert page.locator("#funnel tbody tr").count() == 5
    assert "Cart abandonment" in page.locator("#funnel caption").inner_text()
    assert page.locator("#customers tbody tr").count() == 3
    alerts = client.get("/analytics/alerts", params=WINDOW).json()["data"]["alerts"]
    assert [a["id"] for a in alerts] == ["orders:2025-03-12T14Z:drop"]
    shown = page.locator("#alerts li").all_inner_texts()
    assert len(shown) == 1 and alerts[0]["message"] in shown[0]
    assert "critical" in shown[0] and "observed 3, baseline 31, score -8.3" in shown[0]
    assert page.locator("#curve canvas").count() >= 1
    assert page.locator("#freshness").get_attribute("data-state") in {"fresh", "amber", "red", "final"}
    # keyboard: the breakdown tabs move with the arrow keys
    before = refreshes(page)
    page.locator("[data-dimension=channel]").focus()
    page.keyboard.press("ArrowRight")
    wait_for_refresh(page, before)
    assert page.locator("[data-dimension=country]").get_attribute("aria-selected") == "true"
    countries = client.get(
        "/analytics/sales/breakdown",
        params={**WINDOW, "tz": "America/New_York", "currency": "EUR", "dimension": "country"},
    ).json()["data"]["items"]
    shown = page.locator("#breakdown tbody tr td:first-child").all_inner_texts()
    assert shown == [item["value"] for item in countries]
    screenshot(page, "dashboard")
    problems.assert_none()


def test_changing_time_zone_and_currency_changes_the_numbers_as_the_api_does(
    open_page: OpenPage, client: httpx.Client
) -> None:
    page, problems = open_page()
    load(page, str(client.base_url), "from=2025-03-09&to=2025-03-15&tz=UTC&currency=USD")
    in_utc_usd = assert_cards_match_the_api(page, client, "UTC", "USD")
    before = refreshes(page)
    page.select_option("#currency", "JPY")
    wait_for_refresh(page, before)
    in_jpy = assert_cards_match_the_api(page, client, "UTC", "JPY")
    assert "." not in card(page, "net_sales")[0]  # JPY has no minor unit
    assert in_jpy["net_sales"] != in_utc_usd["net_sales"]
    before = refreshes(page)
    page.fill("#tz", "America/New_York")
    page.press("#tz", "Enter")
    wait_for_refresh(page, before)
    in_new_york = assert_cards_match_the_api(page, client, "America/New_York", "JPY")
    assert in_new_york["net_sales"] != in_jpy["net_sales"]  # the window's local days moved
    assert "tz=America%2FNew_York" in page.url and "currency=JPY" in page.url
    page.fill("#tz", "Mars/Olympus_Mons")  # refused in the page, before any request
    page.press("#tz", "Enter")
    assert "Unknown time zone" in page.locator("#problem").inner_text()
    assert card(page, "net_sales")[1] == str(in_new_york["net_sales"])
    screenshot(page, "dashboard-jpy-new-york")
    problems.assert_none()


def test_the_dashboard_is_usable_on_a_phone(open_page: OpenPage, client: httpx.Client) -> None:
    page, problems = open_page(width=390, height=844)
    load(page, str(client.base_url), "from=2025-03-09&to=2025-03-15&tz=UTC&currency=GBP")
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    assert card(page, "net_sales")[0].startswith("£")
    screenshot(page, "dashboard-phone")
    problems.assert_none()


def double_sales_partition(database: str, day: date) -> float:
    """Rewrite one sales partition with every measure doubled (a real writer transaction: rows, ledger,
    NOTIFY); returns the ledger's `materialized_at` (ms since the epoch, taken inside the transaction)."""
    with psycopg.connect(database, autocommit=True) as conn:
        tables = {}
        for table in TABLES["sales"]:
            frame = read_partition_rows(conn, table, day)
            measures = [column for column in table.columns if column not in table.key]
            tables[table.name] = frame.with_columns(*(pl.col(column) * 2 for column in measures))
        replace_partition(conn, PartitionWrite("sales", day, tables, lake_version=2, run_id="browser-test"))
        row = conn.execute(
            "SELECT materialized_at FROM analytics.materializations WHERE asset = 'sales' AND partition_date = %s",
            (day,),
        ).fetchone()
        assert row is not None
        return row[0].timestamp() * 1000


def test_a_materialization_reaches_the_open_page_through_sse(
    open_page: OpenPage, stack: object, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    with scratch_database(settings, "test_browser_live") as database:
        seed(database)
        with api_client(database) as http:
            page, problems = open_page()
            load(page, str(http.base_url), "from=2025-03-15&to=2025-03-15&tz=UTC&currency=USD")
            net_before = int(card(page, "net_sales")[1])
            assert net_before > 0
            committed_ms = double_sales_partition(database, date(2025, 3, 15))
            page.wait_for_function(
                f"document.querySelector('[data-testid=net_sales]').dataset.raw === '{2 * net_before}'"
            )
            # lastLive is set when the refresh the event caused has finished all its panels (alerts included)
            page.wait_for_function("window.shoppulse.lastLive !== null")
            live = page.evaluate("window.shoppulse.lastLive")
            assert live["asset"] == "sales" and live["partition"] == "2025-03-15"
            api_now = http.get("/analytics/sales/timeseries", params={"from": "2025-03-15", "to": "2025-03-15"})
            assert api_now.json()["data"]["totals"]["net_sales"] == 2 * net_before
            screenshot(page, "dashboard-after-live-update")
            problems.assert_none()
            page.close()  # ends its stream before the server stops
    with capsys.disabled():
        print(
            "\nSSE latency, materialization (ledger materialized_at) -> event in the page:"
            f" {live['receivedAt'] - committed_ms:.0f} ms;"
            f" -> cards re-rendered: {live['renderedAt'] - committed_ms:.0f} ms"
        )


def test_the_api_docs_render_offline(open_page: OpenPage, client: httpx.Client) -> None:
    page, problems = open_page()
    page.goto(f"{client.base_url}/docs")
    page.wait_for_selector(".swagger-ui .opblock")
    assert page.locator(".swagger-ui .opblock").count() == len(client.get("/openapi.json").json()["paths"])
    assert "ShopPulse API" in page.locator(".swagger-ui .title").inner_text()
    screenshot(page, "docs")
    problems.assert_none()


def test_the_open_page_keeps_updating_across_an_api_restart(
    open_page: OpenPage, stack: object, settings: Settings
) -> None:
    """The stream drops with the API; the browser reconnects to the new process by itself, gets `reset`
    (its Last-Event-ID is of the old process), reloads, and later materializations reach it again."""
    with scratch_database(settings, "test_browser_restart") as database:
        seed(database)
        app_settings = Settings(database_url_override=database, api_rate_limit="100000/minute")
        with live_server(create_app(app_settings, now=lambda: NOW)) as base_url:
            page, _ = open_page()  # connection errors while the API is down are expected here
            load(page, base_url, "from=2025-03-15&to=2025-03-15&tz=UTC&currency=USD")
            net_before = int(card(page, "net_sales")[1])
            events_before = page.evaluate("window.shoppulse.events.length")
        port = int(base_url.rsplit(":", 1)[1])
        with live_server(create_app(app_settings, now=lambda: NOW), port=port):
            page.wait_for_function(
                f"window.shoppulse.events.slice({events_before})"
                ".some((e) => e.reason && e.reason.includes('Last-Event-ID'))"
            )
            page.wait_for_function("document.getElementById('live').dataset.state === 'on'")
            double_sales_partition(database, date(2025, 3, 15))
            page.wait_for_function(
                f"document.querySelector('[data-testid=net_sales]').dataset.raw === '{2 * net_before}'"
            )
            page.close()
