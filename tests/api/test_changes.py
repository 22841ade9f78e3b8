"""Unit tests of the live-update fan-out (shoppulse.serving.changes): bounds, resume, overflow."""

from __future__ import annotations

import asyncio
import gc
from datetime import date

import pytest

from shoppulse.serving.changes import MATERIALIZED, RESET, ChangeFeed, TooManyStreamsError


def test_resume_replays_what_is_still_in_the_history_and_resets_otherwise() -> None:
    async def scenario() -> None:
        feed = ChangeFeed(10, history=3)
        first = feed.publish_change("sales", date(2025, 3, 1))
        for day in (2, 3, 4):
            feed.publish_change("sales", date(2025, 3, day))
        # history holds seq 2..4: resuming after 1 loses nothing, after 0 it would
        replay = feed.subscribe(first.id)
        assert [(await feed.next(replay)).seq for _ in range(3)] == [2, 3, 4]
        too_old = feed.subscribe(f"{feed.epoch}-0")
        assert (await feed.next(too_old)).kind == RESET
        for stale in ("other-1", f"{feed.epoch}-99", f"{feed.epoch}-x", "garbage"):
            assert (await feed.next(feed.subscribe(stale))).kind == RESET

    asyncio.run(scenario())


def test_an_overflowing_subscriber_gets_one_reset_then_new_events() -> None:
    async def scenario() -> None:
        feed = ChangeFeed(10, queue_size=2)
        slow = feed.subscribe()
        for day in range(1, 6):
            feed.publish_change("users", date(2025, 3, day))
        reset = await feed.next(slow)
        assert reset.kind == RESET and reset.seq == 5  # resuming from it skips what was dropped
        feed.publish_change("funnel", date(2025, 3, 9))
        after = await feed.next(slow)
        assert (after.kind, after.asset, after.seq) == (MATERIALIZED, "funnel", 6)

    asyncio.run(scenario())


def test_the_number_of_subscriptions_is_bounded_and_released() -> None:
    async def scenario() -> None:
        feed = ChangeFeed(2)
        first = feed.subscribe()
        feed.subscribe()  # dropped unused: garbage-collected, so it frees its slot
        gc.collect()
        second = feed.subscribe()
        with pytest.raises(TooManyStreamsError, match="limit 2"):
            feed.subscribe()
        feed.unsubscribe(first)
        third = feed.subscribe()
        assert len(feed) == 2 and {second, third} == set(feed._subscribers)

    asyncio.run(scenario())
