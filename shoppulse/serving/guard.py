"""API keys and per-client rate limits (the `limits` library: asyncio in-memory sliding window counter).

Keys travel in the `X-API-Key` header. With no keys configured authentication is off and clients
are rate limited per remote address; with keys, a missing key is 401, an unknown key 403, and the
limit applies per key. A refused hit is 429 with Retry-After (seconds until the window frees a slot).
"""

from __future__ import annotations

import hmac
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from limits import parse
from limits.aio.storage import MemoryStorage
from limits.aio.strategies import SlidingWindowCounterRateLimiter

API_KEY_HEADER = "X-API-Key"


@dataclass(frozen=True)
class Rejection:
    status: int
    detail: str
    retry_after: int | None = None


def parse_keys(value: str) -> tuple[str, ...]:
    """Comma-separated keys, blanks dropped."""
    return tuple(key.strip() for key in value.split(",") if key.strip())


class Guard:
    def __init__(self, api_keys: tuple[str, ...], rate_limit: str, clock: Callable[[], float] = time.time) -> None:
        self.api_keys = tuple(key.encode() for key in api_keys)
        self.limit = parse(rate_limit)
        self.limiter = SlidingWindowCounterRateLimiter(MemoryStorage())
        self._clock = clock

    @property
    def auth_enabled(self) -> bool:
        return bool(self.api_keys)

    async def check(self, api_key: bytes | None, client: str) -> Rejection | None:
        """None if the request may proceed, else why not (401/403/429)."""
        identity = client
        if self.api_keys:
            if not api_key:
                return Rejection(401, f"missing API key: send it in the {API_KEY_HEADER} header")
            if not self._known(api_key):
                return Rejection(403, "unknown API key")
            identity = "key:" + api_key.decode("latin-1")
        if await self.limiter.hit(self.limit, identity):
            return None
        reset_at, _ = await self.limiter.get_window_stats(self.limit, identity)
        retry_after = max(1, math.ceil(reset_at - self._clock()))
        return Rejection(429, f"rate limit of {self.limit} exceeded; retry after {retry_after} s", retry_after)

    def _known(self, api_key: bytes) -> bool:
        # compare with every key, in constant time per key, so timing reveals nothing about them
        return any([hmac.compare_digest(api_key, key) for key in self.api_keys])
