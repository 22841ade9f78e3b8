"""The traffic looks like a shop: catalog, popularity, funnel, customers, after-sales, seasonality."""

from __future__ import annotations

import json
from collections import Counter, defaultdict

import numpy as np
import pytest

from simulator.catalog import CATEGORIES, build_catalog
from simulator.model import CHANNELS, DAY_MS, HOURLY_SHAPE, PROMO_NONE, Behaviour, Calendar
from tests.simulator.conftest import END_MS, SimRun, simulate


@pytest.fixture(scope="module")
def events(clean_run: SimRun) -> list[dict]:
    return [json.loads(v) for v in clean_run.values]


def test_catalog_has_5000_products_in_categories_with_four_currencies() -> None:
    catalog = build_catalog()
    assert catalog.size >= 5_000
    assert len(set(catalog.category_of.tolist())) == len(CATEGORIES)
    assert catalog.prices.shape == (4, catalog.size) and (catalog.prices > 0).all()
    assert build_catalog(6_000).size == 6_000


def test_product_popularity_is_skewed(events: list[dict]) -> None:
    views = Counter(e["product_id"] for e in events if e["event_type"] == "product_view")
    counts = sorted(views.values(), reverse=True)
    top_50 = sum(counts[:50]) / sum(counts)
    assert top_50 > 0.3  # a Zipf head: 1% of the catalog draws a third of the views
    assert len(views) > 1_000  # and a long tail


def test_funnel_narrows_at_every_step(clean_run: SimRun) -> None:
    for day in clean_run.truth["days"].values():
        f = day["funnel"]
        if f["sessions"] < 1_000:
            continue  # the last day's sessions are cut at the end of the run
        assert f["sessions"] > f["product_view_sessions"] > f["cart_sessions"] > f["checkout_sessions"]
        assert f["checkout_sessions"] > f["purchase_sessions"] > 0
        conversion = f["purchase_sessions"] / f["sessions"]
        assert 0.005 < conversion < 0.08


def test_markets_devices_and_channels_are_mixed(events: list[dict]) -> None:
    sessions = {e["session_id"]: e for e in events if e["session_id"].startswith("s_")}
    countries = Counter(e["country"] for e in sessions.values())
    devices = Counter(e["device"] for e in sessions.values())
    channels = Counter(e["channel"] for e in sessions.values())
    n = len(sessions)
    assert countries.most_common(1)[0][0] == "US" and len(countries) >= 10
    assert 0.45 < devices["mobile"] / n < 0.7 and devices["tablet"] > 0
    assert set(channels) == set(CHANNELS)


def test_customers_order_numbers_count_up_per_user(events: list[dict], clean_run: SimRun) -> None:
    orders = sorted((e for e in events if e["event_type"] == "order_placed"), key=lambda e: e["event_ts"])
    by_user: dict[str, list[int]] = defaultdict(list)
    for order in orders:
        by_user[order["user_id"]].append(order["customer_order_number"])
    for numbers in by_user.values():
        assert numbers == list(range(numbers[0], numbers[0] + len(numbers)))
    customers = [day["customers"] for day in clean_run.truth["days"].values()]
    assert sum(c["first_time_customers"] for c in customers) > 0
    assert sum(c["returning_customers"] for c in customers) > 0


def test_cancellations_and_refunds_follow_their_order(events: list[dict]) -> None:
    orders = {e["order_id"]: e for e in events if e["event_type"] == "order_placed"}
    payments = {e["order_id"]: e for e in events if e["event_type"] == "payment"}
    cancels = [e for e in events if e["event_type"] == "order_cancelled"]
    refunds = [e for e in events if e["event_type"] == "refund"]
    assert cancels and refunds
    for cancel in cancels:
        order = orders[cancel["order_id"]]
        assert cancel["event_ts"] > order["event_ts"]
        for field in ("user_id", "country", "device", "channel", "items", "subtotal", "total", "currency"):
            assert cancel[field] == order[field]
        assert cancel["session_id"].startswith("b_") and cancel["session_id"] != order["session_id"]
        if cancel["reason"] == "payment_failed":
            assert payments[cancel["order_id"]]["payment_status"] == "failed"
    for refund in refunds:
        order = orders[refund["order_id"]]
        assert refund["event_ts"] - order["event_ts"] >= 2 * DAY_MS
        assert refund["amount"] <= order["total"]
        ordered = {line["product_id"]: line["quantity"] for line in order["items"]}
        assert all(0 < line["quantity"] <= ordered[line["product_id"]] for line in refund["items"])
        assert (refund["user_id"], refund["country"], refund["channel"]) == (
            order["user_id"],
            order["country"],
            order["channel"],
        )
    failed = [p for p in payments.values() if p["payment_status"] == "failed"]
    assert failed and all(p["amount"] == orders[p["order_id"]]["total"] for p in payments.values())


def test_sessions_walk_the_funnel_in_order(events: list[dict]) -> None:
    steps = {"product_view": 1, "add_to_cart": 2, "checkout_started": 3, "order_placed": 4, "payment": 5}
    by_session: dict[str, list[dict]] = defaultdict(list)
    for e in events:
        by_session[e["session_id"]].append(e)
    for session in by_session.values():
        session.sort(key=lambda e: e["event_ts"])
        assert session[0]["event_type"] in ("page_view", "order_cancelled", "refund")  # sessions land on a page
        reached = [
            steps[e["event_type"]]
            for e in session
            if e["event_type"] in ("checkout_started", "order_placed", "payment")
        ]
        assert reached == sorted(reached)
        carts = {e["cart_id"] for e in session if "cart_id" in e}
        assert len(carts) <= 1


def test_traffic_follows_the_daily_cycle_and_promotions() -> None:
    run = simulate(seed=21, days=14, events_per_day=4_000)
    hours = Counter((e_ts // 3_600_000) % 24 for e_ts in (json.loads(v)["event_ts"] for v in run.values))
    peak, trough = int(np.argmax(HOURLY_SHAPE)), int(np.argmin(HOURLY_SHAPE))
    assert hours[peak] > 1.8 * hours[trough]
    calendar = Calendar(21, Behaviour())
    sessions = {d: day["sessions"] for d, day in run.truth["days"].items()}
    start_day = (END_MS - 14 * DAY_MS) // DAY_MS
    promo = {}
    for offset in range(1, 13):  # whole days only
        day_number = start_day + offset
        minutes = np.arange(day_number * 1440, (day_number + 1) * 1440)
        promo[day_number] = (calendar.promo_level(minutes) != PROMO_NONE).mean()
    promo_days = [d for d, share in promo.items() if share == 1.0]
    plain_days = [d for d, share in promo.items() if share == 0.0]
    assert promo_days and plain_days, "seed 21 has both kinds of days in this window"
    iso = {d: (np.datetime64("1970-01-01") + np.timedelta64(d, "D")).astype(str) for d in promo}
    assert min(sessions[iso[d]] for d in promo_days) > np.median([sessions[iso[d]] for d in plain_days]) * 1.3
