"""Generated events against the contract: pydantic models, the Polars wire schema and rules, the drain."""

from __future__ import annotations

import io
import json
from collections import Counter

import polars as pl
import pytest
from pydantic import ValidationError

from shoppulse.contract.events import CURRENCY_EXPONENTS, EventType, parse_event
from shoppulse.contract.schema import WIRE_SCHEMA, find_rejections
from shoppulse.lake.decode import MessageBatch, decode
from simulator.faults import MALFORMED_KINDS, FaultConfig
from tests.simulator.conftest import HORIZON_MS, MAX_EVENT_BYTES, SimRun, simulate
from tests.simulator.oracle import classify

EU = {"DE", "FR", "ES", "IT", "NL", "IE"}


def test_every_event_type_is_generated_and_validates(clean_run: SimRun) -> None:
    types = Counter()
    for value in clean_run.values:
        event = parse_event(value)  # raises on any contract violation
        types[event.event_type] += 1
    assert set(types) == set(EventType)
    assert all(len(v) < MAX_EVENT_BYTES for v in clean_run.values)


def test_schema_v2_events_validate_and_carry_the_extra_field() -> None:
    run = simulate(FaultConfig(v2_rate=0.5), days=0.5, events_per_day=6_000)
    versions = Counter()
    for value in run.values:
        event = parse_event(value)
        versions[event.schema_version] += 1
        assert (event.experiment_variant is not None) == (event.schema_version == 2)
    assert versions[1] > 0 and versions[2] > 0


def test_generated_events_pass_the_vectorized_rules(clean_run: SimRun) -> None:
    frame = pl.read_ndjson(io.BytesIO(b"\n".join(clean_run.values)), schema=WIRE_SCHEMA)
    frame = frame.with_columns(kafka_ts_ms=pl.Series([ts for _, _, ts in clean_run.messages]))
    rejected = find_rejections(frame).filter(pl.col("reject_reason").is_not_null())
    assert rejected.height == 0, rejected.select("event_type", "reject_reason").head(5)
    assert frame.height == len(clean_run.values)


def test_money_is_integer_minor_units_in_the_market_currency(clean_run: SimRun) -> None:
    currencies = Counter()
    for value in clean_run.values:
        doc = json.loads(value)
        currency = doc.get("currency")
        if currency is None:
            continue
        currencies[currency] += 1
        assert currency in CURRENCY_EXPONENTS
        expected = {"JP": "JPY", "GB": "GBP"}.get(doc["country"], "EUR" if doc["country"] in EU else "USD")
        assert currency == expected, doc
        if doc["event_type"] == "product_view" and currency == "JPY":
            assert doc["price"] % 10 == 0  # yen list prices: whole tens, never fractions
    assert set(currencies) == set(CURRENCY_EXPONENTS)


@pytest.fixture(scope="module")
def malformed_run() -> SimRun:
    return simulate(
        FaultConfig(malformed_rate=0.2, max_event_bytes=MAX_EVENT_BYTES, lateness_horizon_ms=HORIZON_MS),
        days=0.3,
        events_per_day=6_000,
    )


def test_each_malformed_kind_fails_pydantic(malformed_run: SimRun) -> None:
    kinds = Counter()
    for value in malformed_run.values:
        kind, _ = classify(value, MAX_EVENT_BYTES)
        if kind == "valid":
            continue
        kinds[kind] += 1
        if kind == "oversized":
            assert len(value) > MAX_EVENT_BYTES
            continue
        with pytest.raises((ValidationError, ValueError)):
            parse_event(value)
    assert set(kinds) == set(MALFORMED_KINDS)


def test_the_drain_quarantines_exactly_the_malformed_messages_with_their_class(malformed_run: SimRun) -> None:
    messages = malformed_run.messages
    batch = MessageBatch(
        topic="t",
        partitions=[0] * len(messages),
        offsets=list(range(len(messages))),
        timestamps_ms=[ts for _, _, ts in messages],
        keys=[k for _, k, _ in messages],
        values=[v for v, _, _ in messages],
    )
    decoded = decode(batch, max_event_bytes=MAX_EVENT_BYTES, lateness_horizon_ms=HORIZON_MS)
    expected = {i: classify(v, MAX_EVENT_BYTES)[0] for i, (v, _, _) in enumerate(messages)}
    quarantined = dict(
        zip(decoded.quarantine["kafka_offset"].to_list(), decoded.quarantine["reason_code"].to_list(), strict=True)
    )
    assert quarantined == {i: kind for i, kind in expected.items() if kind != "valid"}
    assert decoded.events.height == sum(kind == "valid" for kind in expected.values())
    assert decoded.late.height == 0
