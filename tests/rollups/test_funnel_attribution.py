"""A session is counted once, under the dimensions of its first event (event_ts, then event_id)."""

from __future__ import annotations

from shoppulse.rollups.funnel import funnel_daily
from tests.rollups.scenario import D1, at, event, frame


def test_first_event_decides_and_ties_go_to_the_smallest_event_id() -> None:
    rows = [
        event("page_view", at(D1, "09:00:00"), "u1", "s1", country="FR", event_id="b"),
        event("add_to_cart", at(D1, "09:00:00"), "u1", "s1", country="DE", event_id="a"),  # same instant, smaller id
        event("order_placed", at(D1, "09:05:00"), "u1", "s1", country="US", event_id="c"),
        event("page_view", at(D1, "10:00:00"), "u2", "s2", country="US", event_id="d"),
    ]
    for ordering in (rows, rows[::-1]):
        result = funnel_daily(frame(ordering), D1).sort("country")
        assert result.select("country", "sessions", "cart_sessions", "purchase_sessions").rows() == [
            ("DE", 1, 1, 1),
            ("US", 1, 0, 0),
        ]
