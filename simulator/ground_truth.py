"""The exact expected aggregates of what the simulator sent, for end-to-end tests.

Computed from the messages actually handed to the sink (the JSON payloads themselves, parsed back),
following ``docs/metrics.md`` and independent of the pipeline's rollup code:

* each event counted once (re-sent duplicates are not counted again);
* malformed messages are not events: they are counted per class and UTC day received;
* events later than the lateness horizon are not in any day's numbers: counted per day received;
* everything else counts on its event_date (UTC date of event_ts), late or not.

Aggregation is incremental (per batch of messages) so long runs do not keep every event in memory;
only the distinct-count sets (users, sessions per day) are kept.
"""

from __future__ import annotations

import datetime as dt
import io
import json
from pathlib import Path
from typing import Any

import polars as pl

from shoppulse.contract.events import CONTRACT_VERSION, CURRENCY_EXPONENTS, EventType
from shoppulse.contract.schema import WIRE_SCHEMA
from simulator.faults import KIND_DUPLICATE, KIND_EVENT, KIND_MALFORMED, LATE_BEYOND, LATE_WITHIN, MALFORMED_KINDS
from simulator.model import DAY_MS

TOP_PRODUCTS = 10
EVENT_TYPES = [t.value for t in EventType]
LINE_FIELDS = ("orders", "units", "gross_sales", "discounts", "returns", "net_sales")
SALES_MEASURES = (
    "orders",
    "units",
    "gross_sales",
    "discounts",
    "returns",
    "shipping",
    "taxes",
    "first_time_orders",
    "returning_orders",
)
"""Columns of the per-batch sales aggregate besides day and currency (all Int64)."""
SESSION_FLAGS = ("product_view", "cart", "checkout", "purchase")


def day_of(ms: pl.Expr) -> pl.Expr:
    """UTC day number (days since 1970-01-01) of epoch milliseconds."""
    return ms.floordiv(DAY_MS).cast(pl.Int64)


def _iso_day(day: int) -> str:
    return (dt.date(1970, 1, 1) + dt.timedelta(days=day)).isoformat()


def _item(field: str) -> pl.Expr:
    return pl.element().struct.field(field)


class GroundTruth:
    """Accumulates per-day aggregates of sent messages; :meth:`result` gives the JSON document."""

    def __init__(self, run: dict[str, Any] | None = None, top_products: int = TOP_PRODUCTS) -> None:
        self.run = run or {}
        self.top = top_products
        self.totals = {
            "messages": 0,
            "events": 0,
            "duplicates": 0,
            "malformed": 0,
            "late_within_horizon": 0,
            "late_beyond_horizon": 0,
            "out_of_order": 0,
            "schema_v2": 0,
        }
        self._beyond: list[pl.DataFrame] = []
        self._malformed: list[pl.DataFrame] = []
        self._by_type: list[pl.DataFrame] = []
        self._sales: list[pl.DataFrame] = []
        self._lines: list[pl.DataFrame] = []
        self._category_orders: list[pl.DataFrame] = []
        self._users: list[pl.DataFrame] = []
        self._sessions: list[pl.DataFrame] = []
        self._customers: list[pl.DataFrame] = []

    # --- accumulate ----------------------------------------------------------------------------
    def add(self, messages: pl.DataFrame) -> None:
        """Account for messages that were sent (rows of simulator.faults.MESSAGE_SCHEMA)."""
        if messages.height == 0:
            return
        kind = pl.col("kind")
        events = messages.filter(kind == KIND_EVENT)
        t = self.totals
        t["messages"] += messages.height
        t["events"] += events.height
        t["duplicates"] += int((messages["kind"] == KIND_DUPLICATE).sum())
        t["malformed"] += int((messages["kind"] == KIND_MALFORMED).sum())
        t["late_within_horizon"] += int((events["late"] == LATE_WITHIN).sum())
        t["late_beyond_horizon"] += int((events["late"] == LATE_BEYOND).sum())
        t["out_of_order"] += int(events["out_of_order"].sum())
        t["schema_v2"] += int(events["v2"].sum())

        received = day_of(pl.col("release_ts")).alias("day")
        self._beyond.append(events.filter(pl.col("late") == LATE_BEYOND).group_by(received).len())
        self._malformed.append(messages.filter(kind == KIND_MALFORMED).group_by(received, "malformed").len())

        counted = events.filter(pl.col("late") != LATE_BEYOND)
        if counted.height:
            self._add_events(self._parse(counted["payload"]))

    @staticmethod
    def _parse(payloads: pl.Series) -> pl.DataFrame:
        """Parse sent JSON payloads back with the contract's wire schema."""
        text = payloads.str.join("\n").item()
        return pl.read_ndjson(io.BytesIO(text.encode()), schema=WIRE_SCHEMA)

    def _add_events(self, rows: pl.DataFrame) -> None:
        rows = rows.with_columns(day=day_of(pl.col("event_ts")))
        etype = pl.col("event_type")
        self._by_type.append(rows.group_by("day", "event_type").len())
        self._users.append(rows.select("day", "user_id").unique())
        self._sessions.append(
            rows.group_by("day", "session_id").agg(
                (etype == EventType.PRODUCT_VIEW.value).any().alias("product_view"),
                (etype == EventType.ADD_TO_CART.value).any().alias("cart"),
                (etype == EventType.CHECKOUT_STARTED.value).any().alias("checkout"),
                (etype == EventType.ORDER_PLACED.value).any().alias("purchase"),
            )
        )

        placed = rows.filter(etype == EventType.ORDER_PLACED.value)
        refunds = rows.filter(etype == EventType.REFUND.value)
        cancels = rows.filter(etype == EventType.ORDER_CANCELLED.value)
        self._customers.append(
            placed.select("day", "user_id", (pl.col("customer_order_number") == 1).alias("first")).unique()
        )
        zero = pl.lit(0, dtype=pl.Int64)
        self._sales.append(
            pl.concat(
                [
                    placed.group_by("day", "currency").agg(
                        pl.len().cast(pl.Int64).alias("orders"),
                        pl.col("items").list.eval(_item("quantity")).list.sum().sum().alias("units"),
                        pl.col("subtotal").sum().alias("gross_sales"),
                        pl.col("discount").sum().alias("discounts"),
                        zero.alias("returns"),
                        pl.col("shipping").sum().alias("shipping"),
                        pl.col("tax").sum().alias("taxes"),
                        (pl.col("customer_order_number") == 1).sum().cast(pl.Int64).alias("first_time_orders"),
                        (pl.col("customer_order_number") > 1).sum().cast(pl.Int64).alias("returning_orders"),
                    ),
                    refunds.group_by("day", "currency").agg(
                        zero.alias("orders"),
                        zero.alias("units"),
                        zero.alias("gross_sales"),
                        zero.alias("discounts"),
                        pl.col("items").list.eval(_item("amount")).list.sum().sum().alias("returns"),
                        (-pl.col("shipping").sum()).alias("shipping"),
                        (-pl.col("tax").sum()).alias("taxes"),
                        zero.alias("first_time_orders"),
                        zero.alias("returning_orders"),
                    ),
                    cancels.group_by("day", "currency").agg(
                        zero.alias("orders"),
                        zero.alias("units"),
                        zero.alias("gross_sales"),
                        zero.alias("discounts"),
                        (pl.col("subtotal") - pl.col("discount")).sum().alias("returns"),
                        (-pl.col("shipping").sum()).alias("shipping"),
                        (-pl.col("tax").sum()).alias("taxes"),
                        zero.alias("first_time_orders"),
                        zero.alias("returning_orders"),
                    ),
                ],
                how="vertical_relaxed",
            )
        )

        def lines(frame: pl.DataFrame) -> pl.DataFrame:
            return frame.select("day", "currency", "order_id", "items").explode("items").unnest("items")

        placed_lines = lines(placed)
        refund_lines = lines(refunds)
        cancel_lines = lines(cancels)
        keys = ["day", "currency", "product_id", "category"]
        self._lines.append(
            pl.concat(
                [
                    placed_lines.group_by(keys).agg(
                        pl.col("order_id").n_unique().cast(pl.Int64).alias("orders"),
                        pl.col("quantity").sum().alias("units"),
                        (pl.col("unit_price") * pl.col("quantity")).sum().alias("gross_sales"),
                        pl.col("discount").sum().alias("discounts"),
                        zero.alias("returns"),
                    ),
                    refund_lines.group_by(keys).agg(
                        zero.alias("orders"),
                        zero.alias("units"),
                        zero.alias("gross_sales"),
                        zero.alias("discounts"),
                        pl.col("amount").sum().alias("returns"),
                    ),
                    cancel_lines.group_by(keys).agg(
                        zero.alias("orders"),
                        zero.alias("units"),
                        zero.alias("gross_sales"),
                        zero.alias("discounts"),
                        (pl.col("unit_price") * pl.col("quantity") - pl.col("discount")).sum().alias("returns"),
                    ),
                ],
                how="vertical_relaxed",
            )
        )
        # A category's orders are the distinct orders with a line of it (not the sum over its products).
        # An order's lines arrive in one message, so per-batch distinct counts add up across batches.
        self._category_orders.append(
            placed_lines.group_by("day", "currency", "category").agg(
                pl.col("order_id").n_unique().cast(pl.Int64).alias("orders")
            )
        )
        self._compact()

    def _compact(self, every: int = 32) -> None:
        """Merge partial aggregates now and then so memory stays proportional to distinct keys."""
        if len(self._by_type) < every:
            return
        self._by_type = [self._merged_by_type()]
        self._sales = [self._merged_sales()]
        self._lines = [self._merged_lines()]
        self._category_orders = [self._merged_category_orders()]
        self._users = [pl.concat(self._users).unique()]
        self._sessions = [self._merged_sessions()]
        self._customers = [pl.concat(self._customers).unique()]

    # --- merge ---------------------------------------------------------------------------------
    def _merged_by_type(self) -> pl.DataFrame:
        frames = [f for f in self._by_type if f.height]
        if not frames:
            return pl.DataFrame(schema={"day": pl.Int64, "event_type": pl.String, "len": pl.UInt32})
        return pl.concat(frames).group_by("day", "event_type").agg(pl.col("len").sum())

    def _merged_sales(self) -> pl.DataFrame:
        """Sums per (day, currency); always every column of SALES_MEASURES, even when nothing was sold yet
        (a merged-but-empty partial must concatenate with later batches: live mode sends tiny batches)."""
        frames = [f.select("day", "currency", *SALES_MEASURES) for f in self._sales if f.height]
        if not frames:
            return pl.DataFrame(
                schema={"day": pl.Int64, "currency": pl.String, **dict.fromkeys(SALES_MEASURES, pl.Int64)}
            )
        return (
            pl.concat(frames, how="vertical_relaxed")
            .group_by("day", "currency")
            .agg(pl.col(SALES_MEASURES).sum().cast(pl.Int64))
        )

    def _merged_lines(self) -> pl.DataFrame:
        frames = [f for f in self._lines if f.height]
        if not frames:
            return pl.DataFrame(
                schema={
                    "day": pl.Int64,
                    "currency": pl.String,
                    "product_id": pl.String,
                    "category": pl.String,
                    **{c: pl.Int64 for c in ("orders", "units", "gross_sales", "discounts", "returns")},
                }
            )
        return (
            pl.concat(frames, how="vertical_relaxed")
            .group_by("day", "currency", "product_id", "category")
            .agg(pl.col("orders", "units", "gross_sales", "discounts", "returns").sum())
        )

    def _merged_category_orders(self) -> pl.DataFrame:
        frames = [f for f in self._category_orders if f.height]
        if not frames:
            return pl.DataFrame(
                schema={"day": pl.Int64, "currency": pl.String, "category": pl.String, "orders": pl.Int64}
            )
        return pl.concat(frames).group_by("day", "currency", "category").agg(pl.col("orders").sum())

    def _merged_sessions(self) -> pl.DataFrame:
        frames = [f for f in self._sessions if f.height]
        if not frames:
            return pl.DataFrame(
                schema={"day": pl.Int64, "session_id": pl.String, **dict.fromkeys(SESSION_FLAGS, pl.Boolean)}
            )
        return pl.concat(frames).group_by("day", "session_id").agg(pl.col(SESSION_FLAGS).any())

    # --- result --------------------------------------------------------------------------------
    def result(self) -> dict[str, Any]:
        """The ground-truth document (see docs/events.md, "Ground truth")."""
        by_type = self._merged_by_type()
        days = sorted(set(by_type["day"].to_list()))
        sales = self._merged_sales()
        lines = self._merged_lines().with_columns(
            net_sales=pl.col("gross_sales") - pl.col("discounts") - pl.col("returns")
        )
        users = pl.concat(self._users).unique() if self._users else pl.DataFrame(schema={"day": pl.Int64})
        sessions = self._merged_sessions()
        customers = (
            pl.concat(self._customers).unique()
            if self._customers
            else pl.DataFrame(schema={"day": pl.Int64, "user_id": pl.String, "first": pl.Boolean})
        )

        out_days: dict[str, Any] = {}
        user_days = users.group_by("day").agg(pl.col("user_id")) if users.height else None
        users_by_day: dict[int, set[str]] = (
            {d: set(u) for d, u in user_days.iter_rows()} if user_days is not None else {}
        )
        for day in days:
            out_days[_iso_day(day)] = self._day(
                day, by_type, sales, lines, self._merged_category_orders(), sessions, customers, users_by_day
            )
        return {
            "contract_version": CONTRACT_VERSION,
            "currencies": dict(CURRENCY_EXPONENTS),
            "run": self.run,
            "totals": dict(self.totals),
            "days": out_days,
            "late_beyond_horizon_by_received_day": self._beyond_by_day(),
            "malformed_by_received_day": self._malformed_by_day(),
        }

    def _day(
        self,
        day: int,
        by_type: pl.DataFrame,
        sales: pl.DataFrame,
        lines: pl.DataFrame,
        category_orders: pl.DataFrame,
        sessions: pl.DataFrame,
        customers: pl.DataFrame,
        users_by_day: dict[int, set[str]],
    ) -> dict[str, Any]:
        counts = dict.fromkeys(EVENT_TYPES, 0)
        for event_type, n in by_type.filter(pl.col("day") == day).select("event_type", "len").iter_rows():
            counts[event_type] = int(n)

        day_sales = {row["currency"]: row for row in sales.filter(pl.col("day") == day).iter_rows(named=True)}
        money: dict[str, dict[str, int]] = {}
        for currency in CURRENCY_EXPONENTS:
            row = day_sales.get(currency, {})
            gross, discounts, returns = (int(row.get(k) or 0) for k in ("gross_sales", "discounts", "returns"))
            shipping, taxes = int(row.get("shipping") or 0), int(row.get("taxes") or 0)
            net = gross - discounts - returns
            money[currency] = {
                "orders": int(row.get("orders") or 0),
                "units": int(row.get("units") or 0),
                "gross_sales": gross,
                "discounts": discounts,
                "returns": returns,
                "net_sales": net,
                "shipping": shipping,
                "taxes": taxes,
                "total_sales": net + shipping + taxes,
            }
        first_orders = sum(int(r.get("first_time_orders") or 0) for r in day_sales.values())
        returning_orders = sum(int(r.get("returning_orders") or 0) for r in day_sales.values())

        day_customers = customers.filter(pl.col("day") == day)
        n_customers = day_customers["user_id"].n_unique()
        first_time = day_customers.filter(pl.col("first"))["user_id"].n_unique()

        day_sessions = sessions.filter(pl.col("day") == day)
        funnel = {
            "sessions": day_sessions.height,
            "product_view_sessions": int(day_sessions["product_view"].sum()),
            "cart_sessions": int(day_sessions["cart"].sum()),
            "checkout_sessions": int(day_sessions["checkout"].sum()),
            "purchase_sessions": int(day_sessions["purchase"].sum()),
        }

        def active(window: int) -> int:
            seen: set[str] = set()
            for d in range(day - window + 1, day + 1):
                seen |= users_by_day.get(d, set())
            return len(seen)

        day_lines = lines.filter(pl.col("day") == day)
        by_units = (
            day_lines.group_by("product_id")
            .agg(pl.col("units", "orders").sum())
            .filter(pl.col("units") > 0)
            .sort(["units", "product_id"], descending=[True, False])
            .head(self.top)
        )
        by_net: dict[str, list[dict[str, Any]]] = {}
        categories: dict[str, dict[str, dict[str, int]]] = {}
        for currency in CURRENCY_EXPONENTS:
            cur_lines = day_lines.filter(pl.col("currency") == currency)
            by_net[currency] = [
                {k: (int(v) if isinstance(v, int) else v) for k, v in row.items()}
                for row in cur_lines.sort(["net_sales", "product_id"], descending=[True, False])
                .head(self.top)
                .select("product_id", "net_sales", "units", "orders", "gross_sales", "discounts", "returns")
                .iter_rows(named=True)
            ]
            orders_of = dict(
                category_orders.filter((pl.col("day") == day) & (pl.col("currency") == currency))
                .select("category", "orders")
                .iter_rows()
            )
            cats = (
                cur_lines.group_by("category")
                .agg(pl.col(LINE_FIELDS).sum())
                .with_columns(orders=pl.col("category").replace_strict(orders_of, default=0, return_dtype=pl.Int64))
                .sort("category")
            )
            if cats.height:
                categories[currency] = {
                    row["category"]: {f: int(row[f]) for f in LINE_FIELDS} for row in cats.iter_rows(named=True)
                }
        return {
            "events_by_type": counts,
            "orders": counts[EventType.ORDER_PLACED.value],
            "units": sum(m["units"] for m in money.values()),
            "sales": money,
            "customers": {
                "customers": n_customers,
                "first_time_customers": first_time,
                "returning_customers": n_customers - first_time,
                "first_time_orders": first_orders,
                "returning_orders": returning_orders,
            },
            "dau": active(1),
            "wau": active(7),
            "mau": active(30),
            "sessions": funnel["sessions"],
            "page_views": counts[EventType.PAGE_VIEW.value],
            "product_views": counts[EventType.PRODUCT_VIEW.value],
            "funnel": funnel,
            "top_products": {
                "by_units": [
                    {"product_id": p, "units": int(u), "orders": int(o)}
                    for p, u, o in by_units.select("product_id", "units", "orders").iter_rows()
                ],
                "by_net_sales": by_net,
            },
            "categories": categories,
        }

    def _beyond_by_day(self) -> dict[str, int]:
        frames = [f for f in self._beyond if f.height]
        if not frames:
            return {}
        merged = pl.concat(frames).group_by("day").agg(pl.col("len").sum()).sort("day")
        return {_iso_day(d): int(n) for d, n in merged.iter_rows()}

    def _malformed_by_day(self) -> dict[str, dict[str, int]]:
        frames = [f for f in self._malformed if f.height]
        if not frames:
            return {}
        merged = pl.concat(frames).group_by("day", "malformed").agg(pl.col("len").sum()).sort("day", "malformed")
        out: dict[str, dict[str, int]] = {}
        for day, code, n in merged.iter_rows():
            out.setdefault(_iso_day(day), {})[MALFORMED_KINDS[code - 1]] = int(n)
        return out

    def write(self, path: Path) -> dict[str, Any]:
        """Write the document as JSON (sorted keys, stable) and return it."""
        document = self.result()
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(document, sort_keys=True, indent=1) + "\n")
        tmp.replace(path)
        return document
