"""Known rows for the API tests, written to every serving table consistently (as the rollups would).

Each seeded sale is one order with one line, so the order-level tables (sales_*), the category
tables and the product tables all derive from the same list and agree with each other.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import psycopg

NOW = datetime(2025, 4, 1, 12, 0, tzinfo=UTC)
"""The tests' clock: March partitions up to 2025-03-28 are closed (72 h horizon), later ones open."""


def ts(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@dataclass(frozen=True)
class Sale:
    at: datetime
    gross: int
    currency: str = "USD"
    country: str = "US"
    channel: str = "direct"
    device: str = "desktop"
    product_id: str = "p_default"
    category: str = "misc"
    units: int = 1
    discounts: int = 0
    returns: int = 0
    shipping: int = 0
    taxes: int = 0

    @property
    def net(self) -> int:
        return self.gross - self.discounts - self.returns


SALES: list[Sale] = [
    # America/New_York spring forward: 2025-03-09 07:00Z, 02:00 EST -> 03:00 EDT.
    Sale(ts("2025-03-09T04:45Z"), 1000),  # 23:45 EST on 03-08
    Sale(ts("2025-03-09T05:00Z"), 2000),  # 00:00 EST on 03-09
    Sale(ts("2025-03-09T06:45Z"), 3000, shipping=500, taxes=250),  # 01:45 EST
    Sale(ts("2025-03-09T07:00Z"), 4000, discounts=400),  # 03:00 EDT
    Sale(ts("2025-03-10T03:45Z"), 5000, returns=1000),  # 23:45 EDT on 03-09
    Sale(ts("2025-03-10T04:00Z"), 6000),  # 00:00 EDT on 03-10
    Sale(ts("2025-03-08T04:30Z"), 50),  # 23:30 EST on 03-07
    Sale(ts("2025-03-11T03:00Z"), 70),  # 23:00 EDT on 03-10
    # America/New_York fall back: 2025-11-02 06:00Z, 02:00 EDT -> 01:00 EST.
    Sale(ts("2025-11-02T05:15Z"), 100),  # 01:15 EDT
    Sale(ts("2025-11-02T06:15Z"), 200),  # 01:15 EST
    # Asia/Kolkata (+05:30): local midnight is 18:30Z.
    Sale(ts("2025-03-20T18:15Z"), 700, country="IN", channel="email", device="mobile"),  # 23:45 IST 03-20
    Sale(ts("2025-03-20T18:30Z"), 800, country="IN", channel="email", device="mobile"),  # 00:00 IST 03-21
    # Currencies on 2025-03-12 (EUR 0.92, GBP 0.8, JPY 150 per USD).
    Sale(ts("2025-03-12T10:00Z"), 920, currency="EUR", country="DE", channel="social", device="mobile"),
    Sale(ts("2025-03-12T10:00Z"), 1500, currency="JPY", country="JP", channel="paid_search", device="tablet"),
    Sale(ts("2025-03-12T11:00Z"), 1, currency="GBP", country="GB", channel="email", device="desktop"),
    Sale(ts("2025-03-12T12:00Z"), 2, currency="GBP", country="GB", channel="email", device="desktop"),
    # Half-to-even ties on 2025-03-05 (EUR 0.9): 5 cents -> 4.5 EUR cents, 15 cents -> 13.5.
    Sale(ts("2025-03-05T10:00Z"), 5),
    Sale(ts("2025-03-05T11:00Z"), 15),
    # Products on 2025-03-15: net ties (p4 is EUR 4600 = USD 5000 at 0.92) and unit ties.
    Sale(ts("2025-03-15T09:00Z"), 5000, product_id="p1", category="books"),
    Sale(ts("2025-03-15T09:15Z"), 5000, product_id="p2", category="toys", units=3),
    Sale(ts("2025-03-15T10:00Z"), 1500, product_id="p3", category="toys", units=2),
    Sale(ts("2025-03-15T11:30Z"), 1500, product_id="p3", category="toys", units=1),
    Sale(ts("2025-03-15T12:00Z"), 4600, currency="EUR", country="FR", product_id="p4", category="books"),
]

FX_RATES = [
    (date(2025, 3, 1), "USD", Decimal(1)),
    (date(2025, 3, 1), "EUR", Decimal("0.9")),
    (date(2025, 3, 1), "GBP", Decimal("0.8")),
    (date(2025, 3, 1), "JPY", Decimal(150)),
    (date(2025, 3, 10), "EUR", Decimal("0.92")),
]

FUNNEL = [
    (date(2025, 3, 10), "US", "direct", "desktop", 100, 60, 30, 15, 10),
    (date(2025, 3, 10), "DE", "email", "mobile", 50, 20, 10, 5, 2),
    (date(2025, 3, 11), "US", "direct", "desktop", 80, 40, 20, 10, 5),
]
CUSTOMERS = [
    (date(2025, 3, 10), 10, 6, 4, 12, 6, 6),
    (date(2025, 3, 11), 30, 10, 20, 35, 10, 25),
]
USERS_DAILY = [
    (date(2025, 3, 10), 100, 500, 1500, 150, 1000, 400),
    (date(2025, 3, 11), 120, 520, 1510, 170, 1100, 420),
]
ACTIVE_MINUTES = [  # minute_start, users_1m, 5m, 15m, 30m, 60m (23:56 deliberately missing)
    (ts("2025-03-31T23:57Z"), 3, 10, 20, 30, 40),
    (ts("2025-03-31T23:58Z"), 4, 11, 21, 31, 41),
    (ts("2025-03-31T23:59Z"), 5, 12, 22, 32, 42),
    (ts("2025-04-01T00:00Z"), 6, 13, 23, 33, 43),
    (ts("2025-04-01T00:01Z"), 7, 14, 24, 34, 44),  # not complete: the users watermark is 00:01:30
]
USERS_WATERMARK = ts("2025-04-01T00:01:30Z")
MISSING_SALES_PARTITION = date(2025, 3, 25)
"""A March day whose sales partition is not in the ledger (answers spanning it are incomplete)."""


def materialized_at(partition: date) -> datetime:
    """Ledger time of a seeded partition: 01:00 UTC the next day."""
    return datetime.combine(partition + timedelta(days=1), datetime.min.time(), tzinfo=UTC) + timedelta(hours=1)


def partition_watermark(partition: date) -> datetime:
    """Ledger watermark of a seeded partition: one second before its end."""
    return datetime.combine(partition + timedelta(days=1), datetime.min.time(), tzinfo=UTC) - timedelta(seconds=1)


def _floor(instant: datetime, minutes: int) -> datetime:
    return instant.replace(minute=instant.minute - instant.minute % minutes, second=0, microsecond=0)


def _add(target: dict, key: tuple, values: Iterable[int]) -> None:
    current = target.get(key)
    target[key] = list(values) if current is None else [a + b for a, b in zip(current, values, strict=True)]


def sales_tables(sales: Iterable[Sale]) -> dict[str, list[tuple]]:
    """Rows of every sales table, aggregated from the sales like the rollups aggregate events."""
    tables: dict[str, dict[tuple, list[int]]] = defaultdict(dict)
    for sale in sales:
        day = sale.at.date()
        order = [1, sale.units, sale.gross, sale.discounts, sale.returns, sale.net, sale.shipping, sale.taxes]
        order.append(sale.net + sale.shipping + sale.taxes)
        item = order[:6]
        dims = (sale.country, sale.channel, sale.device)
        _add(tables["sales_15m"], (day, _floor(sale.at, 15), sale.currency, *dims), order)
        _add(tables["sales_hourly"], (day, _floor(sale.at, 60), sale.currency), order)
        _add(tables["sales_daily"], (day, sale.currency), order)
        _add(tables["category_sales_15m"], (day, _floor(sale.at, 15), sale.currency, sale.category, *dims), item)
        _add(tables["category_sales_daily"], (day, sale.category, sale.currency), item)
        _add(
            tables["product_sales_hourly"],
            (day, _floor(sale.at, 60), sale.product_id, sale.category, sale.currency),
            item,
        )
        _add(tables["product_sales_daily"], (day, sale.product_id, sale.category, sale.currency), item)
    return {name: [(*key, *values) for key, values in rows.items()] for name, rows in tables.items()}


def insert(conn: psycopg.Connection, table: str, rows: list[tuple]) -> None:
    if not rows:
        return
    placeholders = ", ".join(["%s"] * len(rows[0]))
    with conn.cursor() as cursor:
        cursor.executemany(f"INSERT INTO analytics.{table} VALUES ({placeholders})", rows)


def ledger_rows() -> list[tuple]:
    rows = []
    march = [date(2025, 3, 1) + timedelta(days=offset) for offset in range(31)]
    for asset in ("sales", "products", "funnel", "customers", "fx_rates", "ingest_quality"):
        for day in march:
            if asset == "sales" and day == MISSING_SALES_PARTITION:
                continue
            rows.append((asset, day, 1, 1, "{}", partition_watermark(day), "seed", materialized_at(day)))
    for day in [*march, date(2025, 4, 1)]:
        watermark = USERS_WATERMARK if day == date(2025, 4, 1) else partition_watermark(day)
        rows.append(("users", day, 1, 1, "{}", watermark, "seed", materialized_at(day)))
    return rows


def seed(database_url: str) -> None:
    """Write every known row (the schema must be migrated)."""
    with psycopg.connect(database_url) as conn:
        for table, rows in sales_tables(SALES).items():
            insert(conn, table, rows)
        insert(conn, "fx_rates", FX_RATES)
        insert(conn, "funnel_daily", FUNNEL)
        insert(conn, "customers_daily", CUSTOMERS)
        insert(conn, "users_daily", USERS_DAILY)
        insert(conn, "active_users_minute", [(minute.date(), minute, *counts) for minute, *counts in ACTIVE_MINUTES])
        insert(conn, "materializations", ledger_rows())
        with conn.cursor() as cursor:
            cursor.executemany(
                "INSERT INTO analytics.ingest_progress (topic, kafka_partition, next_offset, high_watermark,"
                " lake_version, updated_at) VALUES (%s, %s, %s, %s, %s, %s)",
                [
                    ("shop.events", 0, 1000, 1010, 7, ts("2025-04-01T11:59:50Z")),
                    ("shop.events", 1, 2000, 2000, 7, ts("2025-04-01T11:59:55Z")),
                ],
            )
