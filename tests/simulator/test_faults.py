"""Fault rates, measured the way a consumer would see them, match the flags."""

from __future__ import annotations

from collections import Counter, defaultdict

import pytest

from simulator.faults import MALFORMED_KINDS, FaultConfig
from simulator.model import HOUR_MS
from tests.simulator.conftest import ALL_FAULTS, HORIZON_MS, MAX_EVENT_BYTES, SimRun
from tests.simulator.oracle import classify


@pytest.fixture(scope="module")
def observed(faulty_run: SimRun) -> dict:
    """Per-message observations: unique events, duplicates, malformed kinds, lateness, order, versions."""
    seen: set[str] = set()
    duplicates = 0
    malformed: Counter[str] = Counter()
    lateness: list[int] = []
    versions: Counter[int] = Counter()
    out_of_order = 0
    latest_in_session: dict[str, int] = defaultdict(lambda: -1)
    for value, _, kafka_ts in faulty_run.messages:
        kind, doc = classify(value, MAX_EVENT_BYTES)
        if doc is None:
            malformed[kind] += 1
            continue
        if doc["event_id"] in seen:
            duplicates += 1
            continue
        seen.add(doc["event_id"])
        late_by = kafka_ts - doc["event_ts"]
        lateness.append(late_by)
        versions[doc["schema_version"]] += 1
        if late_by >= HOUR_MS:
            continue  # a late event is stamped early on purpose: not an ordering fault
        session = doc["session_id"]
        if doc["event_ts"] < latest_in_session[session]:
            out_of_order += 1
        latest_in_session[session] = max(latest_in_session[session], doc["event_ts"])
    return {
        "events": len(seen),
        "duplicates": duplicates,
        "malformed": malformed,
        "lateness": lateness,
        "versions": versions,
        "out_of_order": out_of_order,
    }


def _close(measured: float, expected: float, tolerance: float) -> bool:
    return abs(measured - expected) <= tolerance * expected


def test_duplicate_rate(observed: dict) -> None:
    assert _close(observed["duplicates"] / observed["events"], ALL_FAULTS.duplicate_rate, 0.15)


def test_out_of_order_rate(observed: dict) -> None:
    assert _close(observed["out_of_order"] / observed["events"], ALL_FAULTS.out_of_order_rate, 0.15)


def test_malformed_rate_and_kinds(observed: dict) -> None:
    malformed: Counter[str] = observed["malformed"]
    assert _close(sum(malformed.values()) / observed["events"], ALL_FAULTS.malformed_rate, 0.15)
    assert set(malformed) == set(MALFORMED_KINDS)
    expected_each = sum(malformed.values()) / len(MALFORMED_KINDS)
    assert all(_close(n, expected_each, 0.4) for n in malformed.values())


def test_late_events_are_unambiguously_within_or_beyond_the_horizon(observed: dict) -> None:
    lateness = observed["lateness"]
    delay, beyond_delay = ALL_FAULTS.late_delay_ms, ALL_FAULTS.beyond_delay_ms
    within = [x for x in lateness if delay <= x < delay + HOUR_MS]
    beyond = [x for x in lateness if x >= beyond_delay]
    # Everything else is on time (or sent a little late by an out-of-order swap): nothing borderline.
    assert all(x < HOUR_MS or delay <= x < delay + HOUR_MS or x >= beyond_delay for x in lateness)
    assert all(x < beyond_delay + HOUR_MS for x in beyond)
    assert beyond_delay > HORIZON_MS + 12 * HOUR_MS and delay < HORIZON_MS - 12 * HOUR_MS
    late = len(within) + len(beyond)
    assert _close(late / observed["events"], ALL_FAULTS.late_rate, 0.15)
    assert _close(len(beyond) / late, ALL_FAULTS.late_beyond_share, 0.2)


def test_schema_v2_share(observed: dict, faulty_run: SimRun) -> None:
    versions: Counter[int] = observed["versions"]
    assert set(versions) == {1, 2}
    assert _close(versions[2] / observed["events"], ALL_FAULTS.v2_rate, 0.35)  # whole sessions switch: lumpy
    for value in faulty_run.values:
        _, doc = classify(value, MAX_EVENT_BYTES)
        if doc is not None:
            assert ("experiment_variant" in doc) == (doc["schema_version"] == 2)


def test_no_faults_means_a_clean_stream(clean_run: SimRun) -> None:
    seen: set[str] = set()
    for value, _, kafka_ts in clean_run.messages:
        kind, doc = classify(value, MAX_EVENT_BYTES)
        assert kind == "valid" and doc is not None
        assert doc["event_id"] not in seen
        seen.add(doc["event_id"])
        assert kafka_ts == doc["event_ts"]  # history: the Kafka timestamp is the event time
        assert doc["schema_version"] == 1


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"duplicate_rate": 1.5}, "duplicate_rate"),
        ({"late_delay_ms": 72 * HOUR_MS}, "inside the lateness horizon"),
        ({"late_delay_ms": 0}, "positive"),
        ({"malformed_kinds": ("bogus",)}, "malformed kinds"),
        ({"malformed_kinds": ()}, "malformed kinds"),
        ({"late_beyond_share": -0.1}, "late_beyond_share"),
    ],
)
def test_invalid_fault_settings_are_refused(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        FaultConfig(**kwargs)
