"""A small hand-built shop history whose every rollup number is computed by hand in the tests.

Days: D1 = 2025-03-10, D2 = 2025-03-11 (UTC).

D1
  u1/s1  US organic_search desktop: page_view 10:00, product_view 10:01, add_to_cart 10:02, checkout 10:03,
         order o1 10:04 USD [p1 shoes 2 × 5000 − 1000 discount, p2 hats 1 × 3000]: subtotal 13000, discount 1000,
         shipping 500, tax 960 — first order (customer_order_number 1). Delivered TWICE: the copy delivered
         later claims country "CA", and must lose.
  u4/s4  US social mobile: page_view 10:02, add_to_cart 10:03 (abandons the cart)
  u3/s3  DE direct tablet: order o3 12:20 EUR [p1 shoes 1 × 4500 − 500]: subtotal 4500, discount 500, shipping 0,
         tax 760 — first order; cancelled the same day 15:00 (same amounts)
  u2/s2  JP email mobile: order o2 23:50 JPY [p3 toys 1 × 2000]: subtotal 2000, shipping 300, tax 200 — 2nd order
  u5/s6  GB referral desktop: page_view 23:59:30 — LATE: appended in a second lake commit (within the horizon)
D2
  u2/s5  JP email mobile: order o4 00:10 JPY [p3 toys 3 × 2000 − 600]: subtotal 6000, discount 600, shipping 0,
         tax 540 — 3rd order; cancellation of o2 09:00 (returns 2000, shipping 300, tax 200, booked on D2)
  u1/s7  US organic_search desktop: refund of o1 08:00 USD [p1 shoes 1 unit, amount 4500], shipping 0, tax 360
Beyond the horizon (lake `late` table, received D2 03:00): a page_view of 2025-03-07 06:00 (u9).
Quarantined (received D2): 2 messages, invalid_json.

FX used by the tests (written into fx_rates by hand): EUR 0.8 and JPY 160 per USD on both days, so
JPY 2000 = USD 12.50 and EUR 45.00 = USD 56.25 exactly.
"""

from __future__ import annotations

import datetime as dt
import itertools
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import polars as pl

from shoppulse.contract.schema import ITEM_STRUCT, LAKE_SCHEMA
from shoppulse.lake.decode import QUARANTINE_SCHEMA
from shoppulse.lake.layout import LakeTable
from shoppulse.lake.table import open_table
from shoppulse.lake.writer import append_events, commit_files, write_file

D1 = dt.date(2025, 3, 10)
D2 = dt.date(2025, 3, 11)
BEYOND_HORIZON_DAY = dt.date(2025, 3, 7)
FX = {"EUR": Decimal("0.8"), "JPY": Decimal("160"), "GBP": Decimal("0.5")}

_offsets = itertools.count(1000)


def at(day: dt.date, hhmmss: str) -> dt.datetime:
    return dt.datetime.combine(day, dt.time.fromisoformat(hhmmss), dt.UTC)


def event(
    event_type: str,
    ts: dt.datetime,
    user: str,
    session: str,
    country: str = "US",
    channel: str = "direct",
    device: str = "desktop",
    event_id: str | None = None,
    kafka_delay: dt.timedelta = dt.timedelta(seconds=1),
    kafka_partition: int = 0,
    **fields: Any,
) -> dict[str, Any]:
    """One lake row (LAKE_SCHEMA keys; unset fields are null)."""
    row: dict[str, Any] = dict.fromkeys(LAKE_SCHEMA)
    row.update(
        event_id=event_id or str(uuid.uuid4()),
        event_type=event_type,
        schema_version=1,
        event_ts=ts,
        user_id=user,
        session_id=session,
        country=country,
        channel=channel,
        device=device,
        kafka_partition=kafka_partition,
        kafka_offset=next(_offsets),
        kafka_ts=ts + kafka_delay,
        event_date=ts.date(),
    )
    row.update(fields)
    return row


def line(product: str, category: str, quantity: int, unit_price: int, discount: int = 0) -> dict[str, Any]:
    return {
        "product_id": product,
        "category": category,
        "quantity": quantity,
        "unit_price": unit_price,
        "discount": discount,
        "amount": None,
    }


def refund_line(product: str, category: str, quantity: int, amount: int) -> dict[str, Any]:
    return {
        "product_id": product,
        "category": category,
        "quantity": quantity,
        "unit_price": None,
        "discount": None,
        "amount": amount,
    }


def order(
    event_type: str,
    ts: dt.datetime,
    user: str,
    session: str,
    order_id: str,
    currency: str,
    lines: list[dict[str, Any]],
    shipping: int,
    tax: int,
    order_number: int | None = None,
    **context: Any,
) -> dict[str, Any]:
    """An order_placed / order_cancelled row; subtotal, discount and total follow from the lines."""
    subtotal = sum(item["unit_price"] * item["quantity"] for item in lines)
    discount = sum(item["discount"] for item in lines)
    extra = {"customer_order_number": order_number, "cart_id": f"cart_{order_id}", "payment_method": "card"}
    if event_type == "order_cancelled":
        extra = {"reason": "customer"}
    return event(
        event_type,
        ts,
        user,
        session,
        order_id=order_id,
        currency=currency,
        items=lines,
        subtotal=subtotal,
        discount=discount,
        shipping=shipping,
        tax=tax,
        total=subtotal - discount + shipping + tax,
        **extra,
        **context,
    )


def refund(
    ts: dt.datetime,
    user: str,
    session: str,
    order_id: str,
    currency: str,
    lines: list[dict[str, Any]],
    shipping: int,
    tax: int,
    **context: Any,
) -> dict[str, Any]:
    amount = sum(item["amount"] for item in lines) + shipping + tax
    return event(
        "refund",
        ts,
        user,
        session,
        refund_id=f"r_{order_id}",
        order_id=order_id,
        currency=currency,
        items=lines,
        shipping=shipping,
        tax=tax,
        amount=amount,
        reason="damaged",
        **context,
    )


def frame(rows: list[dict[str, Any]]) -> pl.DataFrame:
    """Lake rows as a LAKE_SCHEMA frame."""
    schema = {name: (pl.List(ITEM_STRUCT) if name == "items" else dtype) for name, dtype in LAKE_SCHEMA.items()}
    return pl.DataFrame(rows, schema=schema, orient="row")


US_SEARCH = {"country": "US", "channel": "organic_search", "device": "desktop"}
US_SOCIAL = {"country": "US", "channel": "social", "device": "mobile"}
DE_DIRECT = {"country": "DE", "channel": "direct", "device": "tablet"}
JP_EMAIL = {"country": "JP", "channel": "email", "device": "mobile"}
GB_REFERRAL = {"country": "GB", "channel": "referral", "device": "desktop"}

O1_LINES = [line("p1", "shoes", 2, 5000, 1000), line("p2", "hats", 1, 3000)]
O2_LINES = [line("p3", "toys", 1, 2000)]
O3_LINES = [line("p1", "shoes", 1, 4500, 500)]
O4_LINES = [line("p3", "toys", 3, 2000, 600)]
O1_EVENT_ID = "00000000-0000-4000-8000-0000000000a1"


def base_rows() -> list[dict[str, Any]]:
    """Every event of the scenario except the late page view of u5."""
    o1 = order(
        "order_placed",
        at(D1, "10:04:00"),
        "u1",
        "s1",
        "o1",
        "USD",
        O1_LINES,
        500,
        960,
        1,
        event_id=O1_EVENT_ID,
        **US_SEARCH,
    )
    o1_copy = {
        **o1,
        "country": "CA",
        "kafka_offset": next(_offsets),
        "kafka_ts": o1["kafka_ts"] + dt.timedelta(minutes=5),
    }
    return [
        event("page_view", at(D1, "10:00:00"), "u1", "s1", page_type="home", url_path="/", **US_SEARCH),
        event(
            "product_view",
            at(D1, "10:01:00"),
            "u1",
            "s1",
            product_id="p1",
            category="shoes",
            price=5000,
            currency="USD",
            **US_SEARCH,
        ),
        event(
            "add_to_cart",
            at(D1, "10:02:00"),
            "u1",
            "s1",
            cart_id="cart_o1",
            product_id="p1",
            category="shoes",
            quantity=2,
            unit_price=5000,
            currency="USD",
            **US_SEARCH,
        ),
        event(
            "checkout_started",
            at(D1, "10:03:00"),
            "u1",
            "s1",
            cart_id="cart_o1",
            checkout_id="co1",
            item_count=3,
            subtotal=13000,
            currency="USD",
            **US_SEARCH,
        ),
        o1,
        o1_copy,
        event("page_view", at(D1, "10:02:30"), "u4", "s4", page_type="home", url_path="/", **US_SOCIAL),
        event(
            "add_to_cart",
            at(D1, "10:03:10"),
            "u4",
            "s4",
            cart_id="cart_u4",
            product_id="p2",
            category="hats",
            quantity=1,
            unit_price=3000,
            currency="USD",
            **US_SOCIAL,
        ),
        order("order_placed", at(D1, "12:20:00"), "u3", "s3", "o3", "EUR", O3_LINES, 0, 760, 1, **DE_DIRECT),
        order("order_cancelled", at(D1, "15:00:00"), "u3", "s3", "o3", "EUR", O3_LINES, 0, 760, **DE_DIRECT),
        order("order_placed", at(D1, "23:50:00"), "u2", "s2", "o2", "JPY", O2_LINES, 300, 200, 2, **JP_EMAIL),
        order("order_placed", at(D2, "00:10:00"), "u2", "s5", "o4", "JPY", O4_LINES, 0, 540, 3, **JP_EMAIL),
        order("order_cancelled", at(D2, "09:00:00"), "u2", "s5", "o2", "JPY", O2_LINES, 300, 200, **JP_EMAIL),
        refund(at(D2, "08:00:00"), "u1", "s7", "o1", "USD", [refund_line("p1", "shoes", 1, 4500)], 0, 360, **US_SEARCH),
    ]


def late_rows() -> list[dict[str, Any]]:
    """The page view of D1 that reaches the lake only later (a second commit, still within the horizon)."""
    return [
        event(
            "page_view",
            at(D1, "23:59:30"),
            "u5",
            "s6",
            page_type="home",
            url_path="/",
            kafka_delay=dt.timedelta(hours=2),
            **GB_REFERRAL,
        )
    ]


def commit_table(lake: Path, table: LakeTable, day: dt.date, rows: pl.DataFrame) -> None:
    """Commit a file into a `late` or `quarantine` partition in one Delta commit (as a drain does)."""
    commit_files(open_table(lake), [write_file(lake, table, day, rows)])


def build_lake(lake: Path, with_late: bool = True) -> None:
    """The scenario's lake: base events (one commit), the late page view (another), late + quarantine files."""
    append_events(lake, frame(base_rows()))
    if with_late:
        append_events(lake, frame(late_rows()))
    beyond = frame(
        [
            event(
                "page_view",
                at(BEYOND_HORIZON_DAY, "06:00:00"),
                "u9",
                "s9",
                kafka_delay=dt.timedelta(days=3, hours=21),
                page_type="home",
                url_path="/",
            )
        ]
    )
    commit_table(lake, LakeTable.LATE, D2, beyond)
    quarantined = pl.DataFrame(
        {
            "topic": ["shop.events"] * 2,
            "kafka_partition": [0, 1],
            "kafka_offset": [7, 8],
            "kafka_ts": [at(D2, "01:00:00"), at(D2, "02:00:00")],
            "key": [b"k", b"k"],
            "value": [b"{", b"nope"],
            "reason_code": ["invalid_json", "invalid_json"],
            "reason": ["not valid JSON", "not valid JSON"],
            "received_date": [D2, D2],
        },
        schema=QUARANTINE_SCHEMA,
    )
    commit_table(lake, LakeTable.QUARANTINE, D2, quarantined)
