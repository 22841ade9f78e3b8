"""An independent recomputation of the simulator's ground truth from raw messages, in plain Python.

It sees only what a consumer sees (message bytes and Kafka timestamps), classifies each message
itself, deduplicates by event_id (first copy wins), and applies docs/metrics.md with dicts and sets.
It shares no code with simulator.ground_truth.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import defaultdict
from typing import Any

from pydantic import ValidationError

from shoppulse.contract.events import CURRENCY_EXPONENTS, EVENT_MODELS, EventType, parse_event

DAY_MS = 86_400_000
INT_FIELDS = {
    name
    for model in EVENT_MODELS.values()
    for name, info in model.model_fields.items()
    if info.annotation is int or name == "schema_version"
}
STR_FIELDS = {"event_id", "event_type", "user_id", "session_id", "country", "device", "channel", "currency"}


def day(ms: int) -> str:
    return (dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(milliseconds=ms)).date().isoformat()


def classify(value: bytes, max_event_bytes: int) -> tuple[str, dict | None]:
    """('valid', document) or (malformed class, None)."""
    if len(value) > max_event_bytes:
        return "oversized", None
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError:
        return "invalid_utf8", None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError:
        return "invalid_json", None
    for name, field_value in doc.items():
        if name in INT_FIELDS and (not isinstance(field_value, int) or isinstance(field_value, bool)):
            return "wrong_type", None
        if name in STR_FIELDS and not isinstance(field_value, str):
            return "wrong_type", None
    if doc.get("schema_version") not in (1, 2):
        return "unsupported_schema_version", None
    try:
        parse_event(value)
    except ValidationError:
        return "invalid_value", None
    return "valid", doc


def recompute(
    messages: list[tuple[bytes, int]], horizon_ms: int, max_event_bytes: int, top: int = 10
) -> dict[str, Any]:
    """Ground truth of (value, kafka_timestamp_ms) messages in delivery order."""
    seen: set[str] = set()
    malformed: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    beyond: dict[str, int] = defaultdict(int)
    events: list[dict] = []
    duplicates = 0
    for value, kafka_ts in messages:
        verdict, doc = classify(value, max_event_bytes)
        if doc is None:
            malformed[day(kafka_ts)][verdict] += 1
            continue
        if doc["event_id"] in seen:
            duplicates += 1
            continue
        seen.add(doc["event_id"])
        if kafka_ts - doc["event_ts"] > horizon_ms:
            beyond[day(kafka_ts)] += 1
            continue
        events.append(doc)

    by_day: dict[str, list[dict]] = defaultdict(list)
    for doc in events:
        by_day[day(doc["event_ts"])].append(doc)
    users_by_day = {d: {e["user_id"] for e in docs} for d, docs in by_day.items()}

    days = {d: _day(d, docs, users_by_day, top) for d, docs in sorted(by_day.items())}
    return {
        "days": days,
        "late_beyond_horizon_by_received_day": dict(sorted(beyond.items())),
        "malformed_by_received_day": {d: dict(sorted(c.items())) for d, c in sorted(malformed.items())},
        "duplicates": duplicates,
        "unique_events": len(seen),
    }


def _day(d: str, docs: list[dict], users_by_day: dict[str, set[str]], top: int) -> dict[str, Any]:
    counts = {t.value: 0 for t in EventType}
    for e in docs:
        counts[e["event_type"]] += 1

    sales = {
        c: dict.fromkeys(("orders", "units", "gross_sales", "discounts", "returns", "shipping", "taxes"), 0)
        for c in CURRENCY_EXPONENTS
    }
    first_orders = returning_orders = 0
    customers: set[str] = set()
    first_customers: set[str] = set()
    products: dict[tuple[str, str], dict[str, Any]] = {}

    def product(currency: str, line: dict) -> dict[str, Any]:
        key = (currency, line["product_id"])
        if key not in products:
            products[key] = {"category": line["category"], "orders": set(), "units": 0, "gross": 0, "disc": 0, "ret": 0}
        return products[key]

    for e in docs:
        kind, cur = e["event_type"], e.get("currency")
        if kind == "order_placed":
            s = sales[cur]
            s["orders"] += 1
            s["units"] += sum(line["quantity"] for line in e["items"])
            s["gross_sales"] += sum(line["unit_price"] * line["quantity"] for line in e["items"])
            s["discounts"] += sum(line["discount"] for line in e["items"])
            s["shipping"] += e["shipping"]
            s["taxes"] += e["tax"]
            customers.add(e["user_id"])
            if e["customer_order_number"] == 1:
                first_orders += 1
                first_customers.add(e["user_id"])
            else:
                returning_orders += 1
            for line in e["items"]:
                p = product(cur, line)
                p["orders"].add(e["order_id"])
                p["units"] += line["quantity"]
                p["gross"] += line["unit_price"] * line["quantity"]
                p["disc"] += line["discount"]
        elif kind == "refund":
            s = sales[cur]
            s["returns"] += sum(line["amount"] for line in e["items"])
            s["shipping"] -= e["shipping"]
            s["taxes"] -= e["tax"]
            for line in e["items"]:
                product(cur, line)["ret"] += line["amount"]
        elif kind == "order_cancelled":
            s = sales[cur]
            s["returns"] += e["subtotal"] - e["discount"]
            s["shipping"] -= e["shipping"]
            s["taxes"] -= e["tax"]
            for line in e["items"]:
                product(cur, line)["ret"] += line["unit_price"] * line["quantity"] - line["discount"]
    for s in sales.values():
        s["net_sales"] = s["gross_sales"] - s["discounts"] - s["returns"]
        s["total_sales"] = s["net_sales"] + s["shipping"] + s["taxes"]

    sessions: dict[str, set[str]] = defaultdict(set)
    for e in docs:
        sessions[e["session_id"]].add(e["event_type"])
    funnel = {
        "sessions": len(sessions),
        "product_view_sessions": sum("product_view" in t for t in sessions.values()),
        "cart_sessions": sum("add_to_cart" in t for t in sessions.values()),
        "checkout_sessions": sum("checkout_started" in t for t in sessions.values()),
        "purchase_sessions": sum("order_placed" in t for t in sessions.values()),
    }

    def active(window: int) -> int:
        today = dt.date.fromisoformat(d)
        users: set[str] = set()
        for back in range(window):
            users |= users_by_day.get((today - dt.timedelta(days=back)).isoformat(), set())
        return len(users)

    units_by_product: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for (_, pid), p in products.items():
        units_by_product[pid][0] += p["units"]
        units_by_product[pid][1] += len(p["orders"])
    by_units = sorted(((-u, pid, o) for pid, (u, o) in units_by_product.items() if u > 0))[:top]
    by_net: dict[str, list[dict]] = {}
    categories: dict[str, dict[str, dict[str, int]]] = {}
    for cur in CURRENCY_EXPONENTS:
        rows = []
        cats: dict[str, dict[str, int]] = {}
        category_orders: dict[str, set[str]] = {}
        for (c, pid), p in products.items():
            if c != cur:
                continue
            net = p["gross"] - p["disc"] - p["ret"]
            rows.append(
                {
                    "product_id": pid,
                    "net_sales": net,
                    "units": p["units"],
                    "orders": len(p["orders"]),
                    "gross_sales": p["gross"],
                    "discounts": p["disc"],
                    "returns": p["ret"],
                }
            )
            cat = cats.setdefault(
                p["category"], dict.fromkeys(("orders", "units", "gross_sales", "discounts", "returns", "net_sales"), 0)
            )
            category_orders.setdefault(p["category"], set()).update(p["orders"])
            cat["orders"] = len(category_orders[p["category"]])  # distinct orders with a line of the category
            cat["units"] += p["units"]
            cat["gross_sales"] += p["gross"]
            cat["discounts"] += p["disc"]
            cat["returns"] += p["ret"]
            cat["net_sales"] += net
        by_net[cur] = sorted(rows, key=lambda r: (-r["net_sales"], r["product_id"]))[:top]
        if cats:
            categories[cur] = dict(sorted(cats.items()))

    return {
        "events_by_type": counts,
        "orders": counts["order_placed"],
        "units": sum(s["units"] for s in sales.values()),
        "sales": sales,
        "customers": {
            "customers": len(customers),
            "first_time_customers": len(first_customers),
            "returning_customers": len(customers) - len(first_customers),
            "first_time_orders": first_orders,
            "returning_orders": returning_orders,
        },
        "dau": active(1),
        "wau": active(7),
        "mau": active(30),
        "sessions": funnel["sessions"],
        "page_views": counts["page_view"],
        "product_views": counts["product_view"],
        "funnel": funnel,
        "top_products": {
            "by_units": [{"product_id": pid, "units": -u, "orders": o} for u, pid, o in by_units],
            "by_net_sales": by_net,
        },
        "categories": categories,
    }
