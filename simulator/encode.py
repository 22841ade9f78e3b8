"""Columnar events -> JSON messages, in bulk (no per-event Python objects).

A message is built from three kinds of parts:

* a fixed-width *head* written straight into a numpy byte matrix: the envelope up to ``session_id``
  (UUID, 13-digit ``event_ts``, 16-hex-digit ids are all fixed width) plus the type's own fixed-width
  ids (cart, checkout, order, payment, refund);
* *fragments* gathered from small precomputed tables: the context (country, device, channel and
  the optional schema-v2 ``experiment_variant``), a page's type and URL, a product with its price
  and currency;
* the few variable-width numbers (quantities, amounts) and order/refund line arrays, joined by
  Polars ``concat_str``.

Every value written is a number or a string from a fixed alphabet (ids, codes, URL paths without
quotes or backslashes), so no JSON escaping is needed; tests validate every generated type against
the pydantic contract and the Polars wire schema.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl

from shoppulse.contract.events import EventType
from simulator.catalog import CURRENCIES, Catalog
from simulator.faults import EventDecisions
from simulator.ids import decimal_chars, hex_chars, namespace, text_series, uuid4_digits
from simulator.model import (
    CANCEL_REASONS,
    CHANNELS,
    COUNTRY_CODES,
    DEVICES,
    PAYMENT_METHODS,
    PAYMENT_STATUSES,
    REFUND_REASONS,
    WindowEvents,
)

EXPERIMENTS: tuple[str, ...] = ("checkout_v2:A", "checkout_v2:B", "search_rank:control", "search_rank:treatment")
"""experiment_variant values of schema_version 2 events (variant code k > 0 is EXPERIMENTS[k - 1])."""

BACKEND_TYPES = frozenset({EventType.ORDER_CANCELLED, EventType.REFUND})
"""Event types sent from a backend session (a new session id), not the shopper's session."""

ID_PREFIX = {
    "user": "u_",
    "session": "s_",
    "backend": "b_",
    "cart": "c_",
    "checkout": "k_",
    "order": "o_",
    "payment": "pay_",
    "refund": "r_",
}
"""Prefix of each kind of id; the rest is 16 hex digits, unique per run seed."""

EVENT_TYPE_CODES: tuple[EventType, ...] = tuple(EventType)
"""event_type column code k is EVENT_TYPE_CODES[k]."""

TS_DIGITS = 13
MIN_WIRE_TS_MS = 10 ** (TS_DIGITS - 1)  # 2001-09-09T01:46:40Z: event_ts is written with exactly 13 digits
MAX_WIRE_TS_MS = 10**TS_DIGITS - 1

ENCODED_SCHEMA: dict[str, pl.DataType] = {
    "ts": pl.Int64(),
    "event_ts": pl.Int64(),
    "key": pl.String(),
    "payload": pl.String(),
    "session": pl.Int64(),
    "late": pl.UInt8(),
    "v2": pl.Boolean(),
}
"""Columns of an encoded window: ts (when the event reaches the producer), event_ts (on the wire;
earlier for late events), key (session id), payload (JSON text), session (session number, negative
for backend sessions), late (0 on time, 1 late within, 2 beyond the horizon), v2."""


@dataclass(frozen=True)
class UuidDigits:
    """The 32 hex digits of n UUIDs, (n, 32) uint8: written as 8-4-4-4-12 with dashes."""

    digits: np.ndarray


Part = bytes | np.ndarray | UuidDigits
"""A piece of a fixed-width text: literal bytes, an (n, w) uint8 column of ASCII, or UUID digits."""

_UUID_GROUPS = ((0, 8), (8, 12), (12, 16), (16, 20), (20, 32))


def _width(part: Part) -> int:
    if isinstance(part, bytes):
        return len(part)
    if isinstance(part, UuidDigits):
        return 36
    return part.shape[1]


def fixed_width_text(n: int, parts: Sequence[Part], name: str) -> pl.Series:
    """Concatenate literal and fixed-width column parts into `n` strings, in numpy."""
    widths = [_width(p) for p in parts]
    template = np.zeros(sum(widths), dtype=np.uint8)
    offset = 0
    for part, width in zip(parts, widths, strict=True):
        if isinstance(part, bytes):
            template[offset : offset + width] = np.frombuffer(part, dtype=np.uint8)
        elif isinstance(part, UuidDigits):
            template[offset + 8 : offset + 24 : 5] = ord("-")  # dashes at 8, 13, 18, 23
        offset += width
    rows = np.empty((n, sum(widths)), dtype=np.uint8)
    rows[:] = template
    offset = 0
    for part, width in zip(parts, widths, strict=True):
        if isinstance(part, UuidDigits):
            for group, (lo, hi) in enumerate(_UUID_GROUPS):
                rows[:, offset + lo + group : offset + hi + group] = part.digits[:, lo:hi]
        elif not isinstance(part, bytes):
            rows[:, offset : offset + width] = part
        offset += width
    return text_series(rows, name)


def _table(values: Sequence[str]) -> pl.Series:
    return pl.Series(list(values), dtype=pl.String)


def _json_str(value: str) -> str:
    if any(ch in value for ch in '"\\') or not value.isascii():
        raise ValueError(f"value needs JSON escaping: {value!r}")
    return value


@dataclass(frozen=True)
class Fragments:
    """Precomputed JSON fragments, indexed by small integer codes."""

    context: pl.Series  # ((country * devices + device) * channels + channel) * variants + variant -> ,"country":..
    page: pl.Series  # url index -> ,"page_type":"..","url_path":".."}
    product_price: (
        pl.Series
    )  # currency * products + product -> ,"product_id":..,"category":..,"price":..,"currency":..}
    product_unit_price: pl.Series  # same with "unit_price"
    product: pl.Series  # product -> "product_id":"..","category":".." (no braces)
    currency_close: pl.Series  # currency -> ,"currency":"USD"}
    currency: pl.Series  # currency -> ,"currency":"USD"

    @classmethod
    def build(cls, catalog: Catalog) -> Fragments:
        variants = ["", *(f',"experiment_variant":"{_json_str(v)}"' for v in EXPERIMENTS)]
        context = [
            f',"country":"{country}","device":"{device}","channel":"{channel}"{variant}'
            for country in COUNTRY_CODES
            for device in DEVICES
            for channel in CHANNELS
            for variant in variants
        ]
        page = [
            f',"page_type":"{page_type}","url_path":"{_json_str(url)}"}}'
            for page_type, url in zip(catalog.url_page_types.to_list(), catalog.urls.to_list(), strict=True)
        ]
        categories = catalog.category_names.to_list()
        product = [
            f'"product_id":"{pid}","category":"{_json_str(categories[c])}"'
            for pid, c in zip(catalog.product_ids.to_list(), catalog.category_of.tolist(), strict=True)
        ]
        prices = catalog.prices.tolist()
        price_rows = [(product[p], prices[c][p], cur) for c, cur in enumerate(CURRENCIES) for p in range(catalog.size)]
        return cls(
            context=_table(context),
            page=_table(page),
            product_price=_table([f',{pr},"price":{price},"currency":"{cur}"}}' for pr, price, cur in price_rows]),
            product_unit_price=_table(
                [f',{pr},"unit_price":{price},"currency":"{cur}"}}' for pr, price, cur in price_rows]
            ),
            product=_table(product),
            currency_close=_table([f',"currency":"{cur}"}}' for cur in CURRENCIES]),
            currency=_table([f',"currency":"{cur}"' for cur in CURRENCIES]),
        )


def _lookup(values: Sequence[str], column: str) -> pl.Expr:
    """Map a small-integer code column to its string."""
    return pl.lit(_table(values)).gather(pl.col(column).cast(pl.UInt32))


def _concat(parts: Sequence[str | pl.Expr]) -> pl.Expr:
    return pl.concat_str([pl.lit(p) if isinstance(p, str) else p for p in parts])


class Encoder:
    """Builds the JSON messages of a window's events; ids are namespaced by the run seed."""

    def __init__(self, catalog: Catalog, seed: int) -> None:
        self.catalog = catalog
        self.ns = {kind: namespace(seed, kind) for kind in ID_PREFIX}
        self.rng = np.random.default_rng(np.random.SeedSequence([seed, 2]))
        self.fragments = Fragments.build(catalog)

    def _hex(self, frame: pl.DataFrame, kind: str, column: str) -> np.ndarray:
        return hex_chars(frame[column].to_numpy(), self.ns[kind])

    def _id(self, frame: pl.DataFrame, field: str, kind: str, column: str, first: bool = False) -> list[Part]:
        """`,"<field>":"<prefix><16 hex>"` parts (without the leading comma when `first`)."""
        lead = "" if first else ","
        return [f'{lead}"{field}":"{ID_PREFIX[kind]}'.encode(), self._hex(frame, kind, column), b'"']

    def _head(self, event_type: EventType, frame: pl.DataFrame, event_ts: np.ndarray, variant: np.ndarray) -> pl.Series:
        """The fixed-width start of each message: event id, type, schema version, time, the type's own ids."""
        n = frame.height
        if n and (event_ts.min() < MIN_WIRE_TS_MS or event_ts.max() > MAX_WIRE_TS_MS):
            raise ValueError("event_ts outside the simulator's range (2001-09-09 .. 2286-11-20)")
        schema_version = (ord("1") + (variant > 0)).astype(np.uint8)[:, None]
        parts: list[Part] = [
            b'{"event_id":"',
            UuidDigits(uuid4_digits(self.rng, n)),
            f'","event_type":"{event_type.value}","schema_version":'.encode(),
            schema_version,
            b',"event_ts":',
            decimal_chars(event_ts, TS_DIGITS),
        ]
        if event_type in (EventType.ADD_TO_CART, EventType.REMOVE_FROM_CART):
            parts += self._id(frame, "cart_id", "cart", "session")
        elif event_type is EventType.CHECKOUT_STARTED:
            parts += self._id(frame, "cart_id", "cart", "session")
            parts += self._id(frame, "checkout_id", "checkout", "session")
        elif event_type is EventType.ORDER_PLACED:
            parts += self._id(frame, "order_id", "order", "order")
            parts += self._id(frame, "cart_id", "cart", "session")
        elif event_type is EventType.ORDER_CANCELLED:
            parts += self._id(frame, "order_id", "order", "order")
        elif event_type is EventType.PAYMENT:
            parts += self._id(frame, "order_id", "order", "order")
            parts += self._id(frame, "payment_id", "payment", "order")
        elif event_type is EventType.REFUND:
            parts += self._id(frame, "refund_id", "refund", "refund")
            parts += self._id(frame, "order_id", "order", "order")
        return fixed_width_text(n, parts, "head")

    def session_parts(self, sessions: pl.DataFrame, backend: bool, variant: np.ndarray) -> pl.DataFrame:
        """Per session: its message key and the envelope fragment from user_id to channel (and variant)."""
        kind = "backend" if backend else "session"
        n = sessions.height
        session_hex = self._hex(sessions, kind, "session")
        prefix = ID_PREFIX[kind].encode()
        ids = fixed_width_text(
            n,
            [b',"user_id":"u_', self._hex(sessions, "user", "user"), b'","session_id":"' + prefix, session_hex, b'"'],
            "ids",
        )
        code = (
            (sessions["country"].cast(pl.UInt32) * len(DEVICES) + sessions["device"]) * len(CHANNELS)
            + sessions["channel"]
        ) * (len(EXPERIMENTS) + 1) + pl.Series(variant, dtype=pl.UInt32)
        return pl.DataFrame([fixed_width_text(n, [prefix, session_hex], "key"), ids, code.alias("code")]).select(
            "key", pl.concat_str("ids", pl.lit(self.fragments.context).gather(pl.col("code"))).alias("context")
        )

    def _items(self, lines: pl.DataFrame, row: str, n_rows: int, refund: bool) -> pl.Series:
        """JSON array of each row's lines, in row order (every row has at least one line)."""
        money: list[str | pl.Expr] = (
            [',"amount":', pl.col("amount")]
            if refund
            else [',"unit_price":', pl.col("unit_price"), ',"discount":', pl.col("discount")]
        )
        line = _concat(
            [
                "{",
                pl.lit(self.fragments.product).gather(pl.col("product")),
                ',"quantity":',
                pl.col("quantity"),
                *money,
                "}",
            ]
        )
        grouped = (
            lines.select(pl.col(row), line.alias("line"))
            .group_by(row, maintain_order=True)
            .agg(pl.col("line").str.join(","))
        )
        if grouped.height != n_rows or not (grouped[row].to_numpy() == np.arange(n_rows)).all():
            raise AssertionError("every order/refund row must have at least one line, rows in order")
        return grouped["line"]

    def _body(self, event_type: EventType, frame: pl.DataFrame, events: WindowEvents) -> tuple[list, pl.DataFrame]:
        """The parts after the context fragment (and the frame with any helper columns they need)."""
        frag = self.fragments
        products = self.catalog.size
        price_code = pl.col("currency").cast(pl.UInt32) * products + pl.col("product").cast(pl.UInt32)
        currency_close = pl.lit(frag.currency_close).gather(pl.col("currency").cast(pl.UInt32))
        currency = pl.lit(frag.currency).gather(pl.col("currency").cast(pl.UInt32))
        if event_type is EventType.PAGE_VIEW:
            return [pl.lit(frag.page).gather(pl.col("url").cast(pl.UInt32))], frame
        if event_type is EventType.PRODUCT_VIEW:
            return [pl.lit(frag.product_price).gather(price_code)], frame
        if event_type in (EventType.ADD_TO_CART, EventType.REMOVE_FROM_CART):
            return [',"quantity":', pl.col("quantity"), pl.lit(frag.product_unit_price).gather(price_code)], frame
        if event_type is EventType.CHECKOUT_STARTED:
            return [',"item_count":', pl.col("item_count"), ',"subtotal":', pl.col("subtotal"), currency_close], frame
        if event_type is EventType.PAYMENT:
            return [
                ',"payment_status":"',
                _lookup(PAYMENT_STATUSES, "status"),
                '","payment_method":"',
                _lookup(PAYMENT_METHODS, "payment_method"),
                '","amount":',
                pl.col("amount"),
                currency_close,
            ], frame
        if event_type in (EventType.ORDER_PLACED, EventType.ORDER_CANCELLED):
            lines = events.order_lines if event_type is EventType.ORDER_PLACED else events.cancel_lines
            frame = frame.with_columns(self._items(lines, "order_row", frame.height, refund=False).alias("items"))
            parts: list = [
                ',"items":[',
                pl.col("items"),
                '],"subtotal":',
                pl.col("subtotal"),
                ',"discount":',
                pl.col("discount"),
                ',"shipping":',
                pl.col("shipping"),
                ',"tax":',
                pl.col("tax"),
                ',"total":',
                pl.col("total"),
                currency,
            ]
            if event_type is EventType.ORDER_PLACED:
                return [
                    *parts,
                    ',"payment_method":"',
                    _lookup(PAYMENT_METHODS, "payment_method"),
                    '","customer_order_number":',
                    pl.col("customer_order_number"),
                    "}",
                ], frame
            return [*parts, ',"reason":"', _lookup(CANCEL_REASONS, "reason"), '"}'], frame
        if event_type is EventType.REFUND:
            frame = frame.with_columns(
                self._items(events.refund_lines, "refund_row", frame.height, refund=True).alias("items")
            )
            return [
                ',"items":[',
                pl.col("items"),
                '],"shipping":',
                pl.col("shipping"),
                ',"tax":',
                pl.col("tax"),
                ',"amount":',
                pl.col("amount"),
                currency,
                ',"reason":"',
                _lookup(REFUND_REASONS, "reason"),
                '"}',
            ], frame
        raise ValueError(f"no template for {event_type}")

    def encode(self, events: WindowEvents, decisions: EventDecisions) -> pl.DataFrame:
        """Messages of every event of the window (ENCODED_SCHEMA), late and schema-v2 decisions applied."""
        shoppers = self.session_parts(events.sessions, backend=False, variant=decisions.session_variant)
        parts = []
        for event_type, frame in events.frames.items():
            if frame.height == 0:
                continue
            variant = decisions.variant[event_type]
            if event_type in BACKEND_TYPES:
                envelope = self.session_parts(frame, backend=True, variant=variant)
            else:
                envelope = shoppers.select(pl.all().gather(frame["srow"]))
            event_ts = frame["ts"].to_numpy() - decisions.late_delay_ms[event_type]
            frame = frame.with_columns(
                self._head(event_type, frame, event_ts, variant),
                envelope["key"],
                envelope["context"],
                pl.Series("event_ts", event_ts, dtype=pl.Int64),
                pl.Series("v2", variant > 0, dtype=pl.Boolean),
            )
            body, frame = self._body(event_type, frame, events)
            payload = _concat([pl.col("head"), pl.col("context"), *body])
            session = -1 - pl.col("session") if event_type in BACKEND_TYPES else pl.col("session")
            parts.append(
                frame.select(
                    pl.col("ts"),
                    pl.col("event_ts"),
                    pl.col("key"),
                    payload.alias("payload"),
                    session.alias("session"),
                    pl.Series("late", decisions.late_kind[event_type], dtype=pl.UInt8),
                    pl.col("v2"),
                )
            )
        if not parts:
            return pl.DataFrame(schema=ENCODED_SCHEMA)
        return pl.concat(parts, how="vertical")
