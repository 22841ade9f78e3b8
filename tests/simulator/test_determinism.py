"""Same seed (and window) -> the same bytes; faults never change the underlying traffic."""

from __future__ import annotations

from simulator.faults import FaultConfig
from tests.simulator.conftest import ALL_FAULTS, MAX_EVENT_BYTES, SimRun, simulate
from tests.simulator.oracle import classify


def test_same_seed_gives_identical_messages() -> None:
    first = simulate(ALL_FAULTS, seed=3, days=1.0, events_per_day=15_000)
    second = simulate(ALL_FAULTS, seed=3, days=1.0, events_per_day=15_000)
    assert len(first.messages) > 15_000 * 0.8
    assert first.messages == second.messages  # values, keys and Kafka timestamps, byte for byte
    assert first.truth == second.truth


def test_another_seed_gives_other_traffic() -> None:
    first = simulate(seed=3, days=0.5, events_per_day=10_000)
    second = simulate(seed=4, days=0.5, events_per_day=10_000)
    assert set(first.values).isdisjoint(second.values)


def test_same_seed_burst_sends_exactly_n_events_and_the_same_bytes() -> None:
    first = simulate(ALL_FAULTS, seed=9, days=0.5, burst_events=12_345)
    second = simulate(ALL_FAULTS, seed=9, days=0.5, burst_events=12_345)
    assert first.result.events == 12_345
    assert first.truth["totals"]["events"] == 12_345
    assert first.messages == second.messages


def test_delivery_faults_do_not_change_the_shops_traffic(clean_run: SimRun) -> None:
    faults = FaultConfig(duplicate_rate=0.05, out_of_order_rate=0.05, malformed_rate=0.02)
    faulty = simulate(faults)  # the clean run's parameters, plus faults
    valid = {v for v in faulty.values if classify(v, MAX_EVENT_BYTES)[0] == "valid"}
    assert valid == set(clean_run.values)
    assert len(faulty.messages) > len(clean_run.messages)
