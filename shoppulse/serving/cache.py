"""In-process cache of rendered responses, invalidated per (asset, partition) by the rollups' NOTIFY.

An entry is the exact bytes of a 200 response plus its ETag, keyed by the normalized request. It is
served until the earliest of: a NOTIFY for an (asset, partition) it read, its own expiry (the time
its answer changes by itself, capped by a TTL that is long while the listener is connected and short
while it is not), or eviction (LRU, bounded size). A query that raced an invalidation is not stored.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date

from shoppulse.serving.results import Scope


@dataclass(slots=True)
class CachedResponse:
    """A rendered 200 response: body, strong ETag (quoted) and the headers to send with it."""

    body: bytes
    etag: bytes
    headers: list[tuple[bytes, bytes]]
    dependencies: tuple[Scope, ...]
    expires_at: float


MAX_BYTES = 256 * 1024 * 1024
"""Budget of the bodies held (an hourly series over 31 days is ~260 kB), whatever `max_entries` says."""


class ResponseCache:
    """LRU of CachedResponse bounded by entries and bytes; `generation` counts invalidations."""

    def __init__(
        self, max_entries: int, clock: Callable[[], float] = time.monotonic, max_bytes: int = MAX_BYTES
    ) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.generation = 0
        self.bytes = 0
        self._clock = clock
        self._entries: OrderedDict[bytes, CachedResponse] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: bytes) -> CachedResponse | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry.expires_at <= self._clock():
            self._drop(key)
            return None
        self._entries.move_to_end(key)
        return entry

    def put(self, key: bytes, entry: CachedResponse, generation: int) -> bool:
        """Store unless an invalidation happened since `generation` was read (the answer may be stale)."""
        if self.max_entries == 0 or generation != self.generation or len(entry.body) > self.max_bytes:
            return False
        if key in self._entries:
            self._drop(key)
        self._entries[key] = entry
        self.bytes += len(entry.body)
        while len(self._entries) > self.max_entries or self.bytes > self.max_bytes:
            self._drop(next(iter(self._entries)))
        return True

    def _drop(self, key: bytes) -> None:
        self.bytes -= len(self._entries.pop(key).body)

    def invalidate(self, asset: str, partition: date | None) -> int:
        """Drop entries that read `asset` at `partition` (None = any); returns how many."""
        self.generation += 1
        stale = [key for key, entry in self._entries.items() if _depends(entry.dependencies, asset, partition)]
        for key in stale:
            self._drop(key)
        return len(stale)

    def clear(self) -> None:
        self.generation += 1
        self._entries.clear()
        self.bytes = 0

    def expiry(self, ttl: float, seconds_until_change: float | None) -> float:
        """Monotonic expiry of an entry stored now."""
        lifetime = ttl if seconds_until_change is None else max(0.0, min(ttl, seconds_until_change))
        return self._clock() + lifetime


def _depends(dependencies: Sequence[Scope], asset: str, partition: date | None) -> bool:
    return any(scope.covers(asset, partition) for scope in dependencies)
