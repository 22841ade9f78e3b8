"""Valid contract events for lake tests (independent of the simulator)."""

from __future__ import annotations

import datetime as dt
import itertools
import uuid

import orjson

from shoppulse.contract.events import parse_event

_counter = itertools.count()

NOW_MS = int(dt.datetime(2026, 11, 20, 12, 0, tzinfo=dt.UTC).timestamp() * 1000)


def event(event_type: str = "page_view", ts_ms: int = NOW_MS, **overrides: object) -> dict:
    """A valid event of `event_type` (overrides replace fields)."""
    n = next(_counter)
    base: dict = {
        "event_id": str(uuid.UUID(int=(n * 7919 + 17) % (1 << 122) | (4 << 76) | (1 << 127))),
        "event_type": event_type,
        "schema_version": 1,
        "event_ts": ts_ms,
        "user_id": f"u_{n % 50:04d}",
        "session_id": f"s_{n % 80:05d}",
        "country": "DE",
        "device": "mobile",
        "channel": "organic_search",
    }
    lines = [
        {"product_id": "p_00001", "category": "shoes", "quantity": 2, "unit_price": 1500, "discount": 300},
        {"product_id": "p_00002", "category": "bags", "quantity": 1, "unit_price": 4000, "discount": 0},
    ]
    order = {
        "order_id": f"o_{n}",
        "items": lines,
        "subtotal": 7000,
        "discount": 300,
        "shipping": 500,
        "tax": 700,
        "total": 7900,
        "currency": "EUR",
    }
    payload: dict = {
        "page_view": {"page_type": "home", "url_path": "/"},
        "product_view": {"product_id": "p_00001", "category": "shoes", "price": 1500, "currency": "EUR"},
        "add_to_cart": {
            "cart_id": "c_1",
            "product_id": "p_00001",
            "category": "shoes",
            "quantity": 1,
            "unit_price": 1500,
            "currency": "EUR",
        },
        "remove_from_cart": {
            "cart_id": "c_1",
            "product_id": "p_00001",
            "category": "shoes",
            "quantity": 1,
            "unit_price": 1500,
            "currency": "EUR",
        },
        "checkout_started": {
            "cart_id": "c_1",
            "checkout_id": "k_1",
            "item_count": 3,
            "subtotal": 7000,
            "currency": "EUR",
        },
        "order_placed": {**order, "cart_id": "c_1", "payment_method": "card", "customer_order_number": 1},
        "payment": {
            "order_id": "o_1",
            "payment_id": "pay_1",
            "payment_status": "captured",
            "payment_method": "card",
            "amount": 7900,
            "currency": "EUR",
        },
        "order_cancelled": {**order, "reason": "customer"},
        "refund": {
            "refund_id": "r_1",
            "order_id": "o_1",
            "items": [{"product_id": "p_00001", "category": "shoes", "quantity": 1, "amount": 1350}],
            "shipping": 0,
            "tax": 135,
            "amount": 1485,
            "currency": "EUR",
            "reason": "damaged",
        },
    }[event_type]
    doc = {**base, **payload, **overrides}
    return doc


def encode(doc: dict) -> bytes:
    return orjson.dumps(doc)


def valid(doc: dict) -> bytes:
    """Encode and assert the contract accepts it (keeps factories honest)."""
    raw = encode(doc)
    parse_event(raw)
    return raw


EVENT_TYPES = [
    "page_view",
    "product_view",
    "add_to_cart",
    "remove_from_cart",
    "checkout_started",
    "order_placed",
    "payment",
    "order_cancelled",
    "refund",
]
