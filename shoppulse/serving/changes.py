"""Fan-out of the rollups' NOTIFY to live-update streams (Server-Sent Events), bounded and resumable.

The API's one NOTIFY listener publishes here; each open stream holds a `Subscription` with a bounded
queue. Invariants:
- Event ids are `<epoch>-<seq>`: `epoch` is random per process, `seq` increases by one per event.
- A subscriber that resumes with the id of an event still in the recent history gets every later
  event, in order; any other resume (another process, an id too old or malformed) gets a `reset`
  first, meaning "you may have missed changes: reload everything".
- A subscriber whose queue overflows loses its queued events and gets one `reset` instead, so a slow
  client never holds memory or blocks the publisher.
- At most `max_subscribers` subscriptions are open; `subscribe` raises `TooManyStreamsError` past that.
  A subscription is released by `unsubscribe`, or when it is garbage-collected unused.
"""

from __future__ import annotations

import asyncio
import secrets
import weakref
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime

MATERIALIZED = "materialized"
RESET = "reset"


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class Change:
    """One event of the stream: an (asset, partition) rewritten, or a `reset` (reload everything)."""

    id: str
    seq: int
    kind: str
    asset: str | None
    partition: date | None
    reason: str | None
    at: datetime

    def payload(self) -> dict[str, str | None]:
        return {
            "asset": self.asset,
            "partition": self.partition.isoformat() if self.partition else None,
            "reason": self.reason,
            "at": self.at.isoformat().replace("+00:00", "Z"),
        }


class TooManyStreamsError(Exception):
    def __init__(self, limit: int) -> None:
        super().__init__(f"too many open live-update streams (limit {limit}); retry later")
        self.limit = limit


class Subscription:
    """A stream's view of the feed; read it with `ChangeFeed.next`."""

    __slots__ = ("__weakref__", "overflowed", "queue")

    def __init__(self, queue_size: int) -> None:
        self.queue: asyncio.Queue[Change] = asyncio.Queue(maxsize=queue_size)
        self.overflowed = False

    def offer(self, change: Change) -> None:
        if self.overflowed:
            return
        try:
            self.queue.put_nowait(change)
        except asyncio.QueueFull:
            self.overflowed = True
            while not self.queue.empty():
                self.queue.get_nowait()


class ChangeFeed:
    def __init__(
        self,
        max_subscribers: int,
        *,
        queue_size: int = 256,
        history: int = 1024,
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        self.max_subscribers = max_subscribers
        self.queue_size = queue_size
        self.epoch = secrets.token_hex(4)
        self._seq = 0
        self._history: deque[Change] = deque(maxlen=history)
        self._subscribers: weakref.WeakSet[Subscription] = weakref.WeakSet()
        self._clock = clock

    def __len__(self) -> int:
        """Open subscriptions."""
        return len(self._subscribers)

    def _publish(self, kind: str, asset: str | None, partition: date | None, reason: str | None) -> Change:
        self._seq += 1
        change = Change(f"{self.epoch}-{self._seq}", self._seq, kind, asset, partition, reason, self._clock())
        self._history.append(change)
        for subscriber in list(self._subscribers):
            subscriber.offer(change)
        return change

    def position(self) -> str:
        """The id of the newest event: a client holding it has missed nothing (so far)."""
        return f"{self.epoch}-{self._seq}"

    def publish_change(self, asset: str, partition: date | None) -> Change:
        return self._publish(MATERIALIZED, asset, partition, None)

    def publish_reset(self, reason: str) -> Change:
        return self._publish(RESET, None, None, reason)

    def subscribe(self, last_event_id: str | None = None) -> Subscription:
        """A new subscription, primed with what a resuming client missed (see the module invariants)."""
        if len(self._subscribers) >= self.max_subscribers:
            raise TooManyStreamsError(self.max_subscribers)
        subscription = Subscription(self.queue_size)
        if last_event_id:
            missed = self._since(last_event_id)
            if missed is None:
                subscription.offer(self._unsequenced_reset("cannot resume from Last-Event-ID; reload"))
            else:
                for change in missed:
                    subscription.offer(change)
        self._subscribers.add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        self._subscribers.discard(subscription)

    async def next(self, subscription: Subscription) -> Change:
        """The subscription's next event (a `reset` after an overflow)."""
        if subscription.overflowed:
            subscription.overflowed = False
            return self._unsequenced_reset("too many changes for this stream; reload")
        return await subscription.queue.get()

    def _unsequenced_reset(self, reason: str) -> Change:
        """A reset carrying the newest id, so the client resumes from here next time."""
        return Change(self.position(), self._seq, RESET, None, None, reason, self._clock())

    def _since(self, last_event_id: str) -> list[Change] | None:
        """Events after `last_event_id`, or None when they cannot be known."""
        epoch, _, seq_text = last_event_id.partition("-")
        if epoch != self.epoch or not seq_text.isdigit():
            return None
        seq = int(seq_text)
        if seq > self._seq:
            return None
        oldest = self._history[0].seq if self._history else self._seq + 1
        if seq < oldest - 1:
            return None
        return [change for change in self._history if change.seq > seq]
