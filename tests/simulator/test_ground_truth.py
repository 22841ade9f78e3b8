"""The simulator's ground truth equals an independent recomputation from the messages it sent."""

from __future__ import annotations

import json
import threading
from dataclasses import replace
from pathlib import Path

from simulator.ground_truth import GroundTruth
from simulator.producer import MemorySink
from simulator.run import Runner, StopSignal, history_plan
from simulator.stream import Stream
from tests.simulator.conftest import ALL_FAULTS, END_MS, HORIZON_MS, MAX_EVENT_BYTES, SimRun
from tests.simulator.oracle import recompute


def _oracle(run: SimRun) -> dict:
    return recompute([(value, ts) for value, _, ts in run.messages], HORIZON_MS, MAX_EVENT_BYTES)


def test_ground_truth_equals_recomputation_from_the_stream(faulty_run: SimRun) -> None:
    oracle = _oracle(faulty_run)
    truth = faulty_run.truth
    assert truth["days"] == oracle["days"]
    assert truth["late_beyond_horizon_by_received_day"] == oracle["late_beyond_horizon_by_received_day"]
    assert truth["malformed_by_received_day"] == oracle["malformed_by_received_day"]
    assert truth["totals"]["duplicates"] == oracle["duplicates"]
    assert truth["totals"]["events"] == oracle["unique_events"]
    # the faults actually happened, so the comparison above covered them
    totals = truth["totals"]
    assert min(totals[k] for k in ("duplicates", "malformed", "late_within_horizon", "late_beyond_horizon")) > 0
    assert sum(day["events_by_type"]["refund"] for day in truth["days"].values()) > 0


def test_ground_truth_is_internally_consistent(faulty_run: SimRun) -> None:
    totals = faulty_run.truth["totals"]
    days = faulty_run.truth["days"]
    counted = sum(sum(day["events_by_type"].values()) for day in days.values())
    assert counted == totals["events"] - totals["late_beyond_horizon"]
    assert sum(faulty_run.truth["late_beyond_horizon_by_received_day"].values()) == totals["late_beyond_horizon"]
    malformed = sum(sum(c.values()) for c in faulty_run.truth["malformed_by_received_day"].values())
    assert malformed == totals["malformed"]
    assert totals["messages"] == len(faulty_run.messages) == totals["events"] + totals["duplicates"] + malformed
    for day in days.values():
        for sales in day["sales"].values():
            assert sales["net_sales"] == sales["gross_sales"] - sales["discounts"] - sales["returns"]
            assert sales["total_sales"] == sales["net_sales"] + sales["shipping"] + sales["taxes"]
        for currency, rows in day["categories"].items():  # categories add up to the day's sales
            assert sum(r["net_sales"] for r in rows.values()) == day["sales"][currency]["net_sales"]
        funnel = day["funnel"]
        assert funnel["sessions"] >= funnel["product_view_sessions"] >= funnel["purchase_sessions"]
        assert funnel["cart_sessions"] >= funnel["checkout_sessions"] >= funnel["purchase_sessions"]
        assert day["dau"] <= day["wau"] <= day["mau"]


def test_a_stopped_run_accounts_for_exactly_what_was_sent() -> None:
    stop = StopSignal()

    class StopAfterFirstBatch(MemorySink):
        def send(self, values: list, keys: list, timestamps: list, stop_event: threading.Event | None = None) -> int:
            count = super().send(values, keys, timestamps, stop_event)
            stop.event.set()
            return count

    plan = replace(history_plan(5, END_MS, days=2.0, events_per_day=20_000, products=5_000), batch_events=4_000)
    sink = StopAfterFirstBatch()
    truth = GroundTruth()
    result = Runner(Stream(plan, ALL_FAULTS), sink, "history", None, truth, progress=False, stop=stop).run_until(END_MS)
    assert result.stopped
    assert 0 < result.messages == len(sink.values)
    assert result.messages < 20_000  # it really stopped early
    oracle = recompute([(v, ts) for v, _, ts in sink.messages()], HORIZON_MS, MAX_EVENT_BYTES)
    document = truth.result()
    assert document["days"] == oracle["days"]
    assert document["totals"]["messages"] == result.messages


def test_ground_truth_file_is_stable_json(faulty_run: SimRun, tmp_path: Path) -> None:
    first, second = tmp_path / "a.json", tmp_path / "b.json"
    faulty_run.ground_truth.write(first)
    faulty_run.ground_truth.write(second)
    assert first.read_bytes() == second.read_bytes()
    text = first.read_text()
    assert json.loads(text)["days"] == faulty_run.truth["days"]
    assert text == json.dumps(json.loads(text), sort_keys=True, indent=1) + "\n"  # keys in sorted order
