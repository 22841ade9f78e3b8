"""Bulk decode: valid events land, every bad message is quarantined with its reason, nothing is lost."""

from __future__ import annotations

import random

import orjson
import polars as pl
import pytest

from shoppulse.contract.events import parse_event
from shoppulse.contract.schema import LAKE_SCHEMA
from shoppulse.lake.decode import MessageBatch, decode
from tests.lake.factories import EVENT_TYPES, NOW_MS, event, valid

HORIZON_MS = 72 * 3_600_000


def batch(values: list[bytes | None], ts_ms: int = NOW_MS) -> MessageBatch:
    n = len(values)
    return MessageBatch("t", [i % 3 for i in range(n)], list(range(n)), [ts_ms] * n, [None] * n, values)


def test_every_event_type_decodes_into_the_lake_schema() -> None:
    values = [valid(event(t)) for t in EVENT_TYPES]
    out = decode(batch(values), 65536, HORIZON_MS)
    assert out.quarantine.height == 0 and out.late.height == 0
    assert out.events.schema == pl.Schema(LAKE_SCHEMA)
    assert sorted(out.events["event_type"].to_list()) == sorted(EVENT_TYPES)
    order = out.events.filter(pl.col("event_type") == "order_placed").row(0, named=True)
    assert order["items"][0] == {
        "product_id": "p_00001",
        "category": "shoes",
        "quantity": 2,
        "unit_price": 1500,
        "discount": 300,
        "amount": None,
    }
    assert order["event_ts"].isoformat() == "2026-11-20T12:00:00+00:00"
    assert str(order["event_date"]) == "2026-11-20"


BAD_MESSAGES = [
    (None, "empty"),
    (b"", "empty"),
    (b"   ", "invalid_json"),
    (b'{"event_id": ', "invalid_json"),
    (b"\xff\xfe{}", "invalid_utf8"),
    (b"[1, 2]", "not_an_object"),
    (b"x" * 70_000, "oversized"),
    (orjson.dumps({**event("add_to_cart"), "quantity": "2"}), "wrong_type"),
    (orjson.dumps({**event("order_placed"), "subtotal": 70.5}), "wrong_type"),
    (orjson.dumps({**event("page_view"), "user_id": 12345}), "wrong_type"),
    (orjson.dumps({**event("page_view"), "url_path": {"path": "/"}}), "wrong_type"),
    (orjson.dumps({**event("page_view"), "schema_version": 3}), "unsupported_schema_version"),
    (orjson.dumps({**event("page_view"), "event_type": "teleport"}), "unknown_event_type"),
    (orjson.dumps({**event("page_view"), "country": "Germany"}), "invalid_value"),
    (orjson.dumps({k: v for k, v in event("page_view").items() if k != "user_id"}), "invalid_value"),
    (orjson.dumps({**event("order_placed"), "total": 1}), "invalid_value"),
    (orjson.dumps({**event("page_view"), "experiment_variant": "a:b"}), "invalid_value"),
    (orjson.dumps({**event("page_view"), "event_ts": NOW_MS + 2 * 3_600_000}), "future_event_ts"),
]


@pytest.mark.parametrize(("value", "code"), BAD_MESSAGES, ids=[c + str(i) for i, (_, c) in enumerate(BAD_MESSAGES)])
def test_bad_message_is_quarantined_with_its_reason(value: bytes | None, code: str) -> None:
    good = [valid(event("page_view")) for _ in range(5)]
    out = decode(batch([*good[:2], value, *good[2:]]), 65536, HORIZON_MS)
    assert out.events.height == 5
    assert out.quarantine.height == 1
    row = out.quarantine.row(0, named=True)
    assert row["reason_code"] == code, row["reason"]
    assert row["kafka_offset"] == 2 and row["value"] == value
    assert row["reason"]


def test_additive_v2_event_is_accepted_and_keeps_its_extra_field() -> None:
    v2 = valid(event("page_view", schema_version=2, experiment_variant="checkout_v2:B"))
    out = decode(batch([v2]), 65536, HORIZON_MS)
    assert out.events["experiment_variant"].to_list() == ["checkout_v2:B"]


def test_pretty_printed_event_is_accepted() -> None:
    doc = event("product_view")
    out = decode(batch([orjson.dumps(doc, option=orjson.OPT_INDENT_2)]), 65536, HORIZON_MS)
    assert out.events["event_id"].to_list() == [doc["event_id"]]


def test_late_events_split_at_the_horizon() -> None:
    within = valid(event("page_view", ts_ms=NOW_MS - HORIZON_MS + 60_000))
    beyond = valid(event("page_view", ts_ms=NOW_MS - HORIZON_MS - 60_000))
    out = decode(batch([within, beyond]), 65536, HORIZON_MS)
    assert out.events["kafka_offset"].to_list() == [0]
    assert str(out.events["event_date"][0]) == "2026-11-17"
    assert out.late["kafka_offset"].to_list() == [1]


def test_a_message_fate_does_not_depend_on_its_neighbours() -> None:
    """Re-reading the same offsets in other batches (after a crash) must give the same lake."""
    rng = random.Random(7)
    values = [valid(event(rng.choice(EVENT_TYPES))) for _ in range(300)]
    for position, (bad, _) in zip(rng.sample(range(300), len(BAD_MESSAGES)), BAD_MESSAGES, strict=True):
        values[position] = bad
    whole = decode(batch(values), 65536, HORIZON_MS)
    pieces = []
    start = 0
    while start < len(values):
        size = rng.randint(1, 60)
        part = MessageBatch(
            "t",
            [i % 3 for i in range(start, start + size)][: len(values) - start],
            list(range(start, min(start + size, len(values)))),
            [NOW_MS] * len(values[start : start + size]),
            [None] * len(values[start : start + size]),
            values[start : start + size],
        )
        pieces.append(decode(part, 65536, HORIZON_MS))
        start += size
    assert whole.quarantine.height == len(BAD_MESSAGES)
    for name in ("events", "late", "quarantine"):
        joined = pl.concat([getattr(p, name) for p in pieces]).sort("kafka_offset")
        assert joined.equals(getattr(whole, name).sort("kafka_offset")), name


def _lines(doc: dict, **changes: object) -> dict:
    """`doc` with its first order line changed."""
    first = {**doc["items"][0], **changes}
    return {**doc, "items": [first, *doc["items"][1:]]}


ORDER_LINE_MUTATIONS = {
    "quantity 0": lambda d: _lines(d, quantity=0),
    "negative unit price": lambda d: _lines(d, unit_price=-1500),
    "negative discount": lambda d: _lines(d, discount=-300),
    "product id pattern": lambda d: _lines(d, product_id="product one"),
    "empty category": lambda d: _lines(d, category=""),
    "missing category": lambda d: {**d, "items": [{k: v for k, v in d["items"][0].items() if k != "category"}]},
    "null line": lambda d: {**d, "items": [None, *d["items"][1:]]},
    "no lines": lambda d: {**d, "items": []},
    "101 lines": lambda d: {**d, "items": d["items"][:1] * 101},
    "subtotal off by one": lambda d: {**d, "subtotal": d["subtotal"] + 1, "total": d["total"] + 1},
    "line discounts do not add up": lambda d: _lines(d, discount=301),
    "total off by one": lambda d: {**d, "total": d["total"] + 1},
    "unchanged": lambda d: d,
}
REFUND_MUTATIONS = {
    "amount off by one": lambda d: {**d, "amount": d["amount"] + 1},
    "line amount changed": lambda d: _lines(d, amount=1349),
    "negative line amount": lambda d: {**_lines(d, amount=-1350), "amount": -1215},
    "quantity 0": lambda d: _lines(d, quantity=0),
    "no lines": lambda d: {**d, "items": []},
    "unchanged": lambda d: d,
}
LINE_CASES = [
    *((t, name, mutate) for t in ("order_placed", "order_cancelled") for name, mutate in ORDER_LINE_MUTATIONS.items()),
    *(("refund", name, mutate) for name, mutate in REFUND_MUTATIONS.items()),
]


def test_order_line_rules_agree_with_the_pydantic_models() -> None:
    """The fast flagging (lines exploded into rows) and the explained rules (per list) reject exactly
    what the models reject, each with its own reason, whatever the other rows of the batch."""
    docs = [mutate(event(event_type)) for event_type, _, mutate in LINE_CASES]
    values = [orjson.dumps(doc) for doc in docs]
    out = decode(batch([valid(event("page_view")), *values]), 65536, HORIZON_MS)
    reasons = dict(zip(out.quarantine["kafka_offset"].to_list(), out.quarantine["reason"].to_list(), strict=True))
    for offset, ((event_type, name, _), value) in enumerate(zip(LINE_CASES, values, strict=True), start=1):
        try:
            parse_event(value)
            accepted = True
        except ValueError:
            accepted = False
        assert (offset not in reasons) == accepted, (event_type, name, reasons.get(offset))
        if not accepted:
            assert reasons[offset] != "breaks a contract rule", (event_type, name)  # explained, not a fallback
    assert out.events.height == 1 + sum(name == "unchanged" for _, name, _ in LINE_CASES)


def test_a_few_bad_messages_cost_one_parse_each_not_a_bisection_of_the_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    """Bisecting 2,000 messages for 12 bad ones would parse ~150 times; suspects are parsed alone."""
    import shoppulse.lake.decode as decode_module

    calls: list[int] = []
    read_lines = decode_module._read_lines

    def counting(lines: list[bytes]) -> pl.DataFrame:
        calls.append(len(lines))
        return read_lines(lines)

    monkeypatch.setattr(decode_module, "_read_lines", counting)
    rng = random.Random(3)
    values = [valid(event(rng.choice(EVENT_TYPES))) for _ in range(2_000)]
    bad = [value for value, code in BAD_MESSAGES if code in ("invalid_json", "invalid_utf8", "wrong_type")]
    for position, value in zip(rng.sample(range(2_000), len(bad) * 3), bad * 3, strict=True):
        values[position] = value
    out = decode(batch(values), 65536, HORIZON_MS)
    assert out.quarantine.height == len(bad) * 3
    assert out.events.height == 2_000 - len(bad) * 3
    assert len(calls) <= 2 + len(bad) * 3, calls  # the batch, the likely-good rest, each suspect


def test_a_flood_of_bad_messages_is_each_quarantined_at_about_two_parses_each(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import shoppulse.lake.decode as decode_module

    calls: list[int] = []
    read_lines = decode_module._read_lines
    monkeypatch.setattr(decode_module, "_read_lines", lambda lines: calls.append(len(lines)) or read_lines(lines))
    flood = decode_module._PARSE_ALONE_MAX + 44
    wrong = orjson.dumps({**event("add_to_cart"), "quantity": "2"})
    values = [valid(event("page_view")) if i % 2 else wrong for i in range(2 * flood)]
    out = decode(batch(values), 65536, HORIZON_MS)
    assert out.quarantine["reason_code"].to_list() == ["wrong_type"] * flood
    assert sorted(out.quarantine["kafka_offset"].to_list()) == list(range(0, 2 * flood, 2))
    assert out.events.height == flood
    assert len(calls) <= 2 + 2 * flood  # bisecting an all-bad group: ~2 parses per line, never more


NON_STRINGS = {"number": 12345, "negative float": -2.5, "boolean": True, "object": {"a": 1}, "array": ["a"]}


def _non_string_cases() -> list[tuple[str, str, str, dict]]:
    """Every string field of every event type (order lines included) given each kind of non-string."""
    cases = []
    for event_type in EVENT_TYPES:
        doc = event(event_type)
        for kind, value in NON_STRINGS.items():
            cases += [(event_type, name, kind, {**doc, name: value}) for name, v in doc.items() if isinstance(v, str)]
            for name, v in (doc.get("items") or [{}])[0].items():
                if isinstance(v, str):
                    cases.append((event_type, f"items[0].{name}", kind, _lines(doc, **{name: value})))
    return cases


def test_a_non_string_in_any_string_field_is_quarantined_as_the_models_do() -> None:
    """Polars reads a JSON number/boolean/object/array given for a string field as its text; the
    contract (strict pydantic models) rejects it, and so must the drain, whatever field it is in."""
    cases = _non_string_cases()
    values = [orjson.dumps(doc) for *_, doc in cases]
    out = decode(batch([valid(event("page_view")), *values]), 65536, HORIZON_MS)
    codes = dict(zip(out.quarantine["kafka_offset"].to_list(), out.quarantine["reason_code"].to_list(), strict=True))
    reasons = dict(zip(out.quarantine["kafka_offset"].to_list(), out.quarantine["reason"].to_list(), strict=True))
    assert len(cases) > 100
    for offset, ((event_type, name, kind, _), value) in enumerate(zip(cases, values, strict=True), start=1):
        with pytest.raises(ValueError):
            parse_event(value)
        assert offset in codes, (event_type, name, kind)
        if codes[offset] == "wrong_type":
            assert reasons[offset].startswith(f"{name}: Input should be a valid string"), reasons[offset]
    assert out.events.height == 1
    by_field = {(name, codes[offset]) for offset, (_, name, _, _) in enumerate(cases, start=1)}
    assert ("user_id", "wrong_type") in by_field and ("items[0].product_id", "wrong_type") in by_field


def test_strings_that_look_like_numbers_or_json_stay_strings() -> None:
    doc = {**event("page_view"), "user_id": "12345", "session_id": "-1", "url_path": "[draft]"}
    out = decode(batch([orjson.dumps(doc)]), 65536, HORIZON_MS)
    assert out.quarantine.height == 0
    assert out.events.select("user_id", "session_id", "url_path").row(0) == ("12345", "-1", "[draft]")
