"""Rendering an answer: JSON bytes, a strong ETag, Cache-Control, 304 on a matching If-None-Match."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

import orjson
from starlette.responses import Response

from shoppulse.serving.cache import CachedResponse
from shoppulse.serving.results import Scope

JSON = b"application/json"
MAX_AGE_COMPLETE = 300
"""Client cache lifetime of an answer over closed partitions (they change only on a backfill)."""
MAX_AGE_OPEN = 5
"""Client cache lifetime of an answer that still changes as events arrive."""


def etag_for(body: bytes) -> bytes:
    return b'"' + hashlib.blake2b(body, digest_size=16).hexdigest().encode() + b'"'


def cache_control_for(complete: bool, private: bool) -> bytes:
    scope = "private" if private else "public"
    return f"{scope}, max-age={MAX_AGE_COMPLETE if complete else MAX_AGE_OPEN}".encode()


def build_entry(
    body: bytes,
    *,
    complete: bool,
    private: bool,
    dependencies: Sequence[Scope],
    expires_at: float,
    cache_control: bytes | None = None,
) -> CachedResponse:
    """A rendered 200 answer; `cache_control` overrides the directive derived from completeness."""
    etag = etag_for(body)
    headers = [
        (b"content-type", JSON),
        (b"content-length", str(len(body)).encode()),
        (b"etag", etag),
        (b"cache-control", cache_control or cache_control_for(complete, private)),
        (b"x-cache", b"hit"),  # as stored: an entry's headers are sent as-is on cache hits
    ]
    return CachedResponse(body, etag, headers, tuple(dependencies), expires_at)


def not_modified(if_none_match: bytes | None, etag: bytes) -> bool:
    """Weak comparison of If-None-Match (a list, `*`, or W/ tags) with our ETag (RFC 9110 §13.1.2)."""
    if not if_none_match:
        return False
    for candidate in if_none_match.split(b","):
        tag = candidate.strip()
        if tag == b"*":
            return True
        if tag.startswith(b"W/"):
            tag = tag[2:]
        if tag == etag:
            return True
    return False


def not_modified_headers(entry: CachedResponse) -> list[tuple[bytes, bytes]]:
    """Headers of a 304 for the entry: validators and caching directives, no body headers."""
    return [(name, value) for name, value in entry.headers if name in (b"etag", b"cache-control", b"x-cache")]


def to_response(entry: CachedResponse, if_none_match: bytes | None) -> Response:
    """The response to the request that computed the entry (a cache miss)."""
    if not_modified(if_none_match, entry.etag):
        response = Response(status_code=304)
        response.raw_headers = _as_miss(not_modified_headers(entry))
        return response
    response = Response(content=entry.body, status_code=200)
    response.raw_headers = _as_miss(entry.headers)
    return response


def _as_miss(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    return [(name, b"miss" if name == b"x-cache" else value) for name, value in headers]


def json_response(payload: Any, status: int, headers: Mapping[str, str] | None = None) -> Response:
    """A small JSON response (errors), serialized with orjson."""
    return Response(orjson.dumps(payload), status_code=status, headers=headers, media_type="application/json")
