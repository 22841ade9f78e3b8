"""Vectorized identifiers: UUIDs from a seeded RNG and short hex ids from counters.

Everything here is a pure function of its inputs (no global randomness), so the same seed always
yields the same ids, and builds whole columns at once (no per-event Python objects).
"""

from __future__ import annotations

import numpy as np
import polars as pl
import pyarrow as pa

_HEX_DIGITS = b"0123456789abcdef"
_HEX_PAIRS = np.array([_HEX_DIGITS[i >> 4] | (_HEX_DIGITS[i & 15] << 8) for i in range(256)], dtype=np.uint16)
"""Byte value -> its two lowercase hex digits, as one little-endian uint16 ("ab" == 0x6261)."""

_UUID_LAYOUT = np.array([*range(8), 32, *range(8, 12), 32, *range(12, 16), 32, *range(16, 20), 32, *range(20, 32)])
"""Positions of the 32 hex digits (32 = the dash) in the canonical 8-4-4-4-12 text form."""

_MASK64 = np.uint64(0xFFFFFFFFFFFFFFFF)


def _hex_of_bytes(raw: np.ndarray) -> np.ndarray:
    """(n, k) uint8 -> (n, 2k) uint8 ASCII hex digits."""
    return _HEX_PAIRS[raw].view(np.uint8).reshape(raw.shape[0], raw.shape[1] * 2)


def text_series(chars: np.ndarray, name: str) -> pl.Series:
    """(n, w) uint8 ASCII -> a Polars String series of n strings of width w (no per-row copies)."""
    chars = np.ascontiguousarray(chars)
    n, width = chars.shape
    offsets = np.arange(0, (n + 1) * width, width, dtype=np.int64)
    array = pa.Array.from_buffers(pa.large_string(), n, [None, pa.py_buffer(offsets), pa.py_buffer(chars)])
    return pl.Series(name, array)


def uuid4_digits(rng: np.random.Generator, n: int) -> np.ndarray:
    """The 32 hex digits of `n` random version-4 UUIDs drawn from `rng`, as an (n, 32) uint8 array."""
    raw = np.frombuffer(rng.bytes(n * 16), dtype=np.uint8).reshape(n, 16).copy()
    raw[:, 6] = (raw[:, 6] & 0x0F) | 0x40  # version 4
    raw[:, 8] = (raw[:, 8] & 0x3F) | 0x80  # RFC 4122 variant
    return _hex_of_bytes(raw)


def uuid4_chars(rng: np.random.Generator, n: int) -> np.ndarray:
    """`n` random version-4 UUIDs drawn from `rng`, as an (n, 36) uint8 array of canonical lowercase text."""
    digits = np.empty((n, 33), dtype=np.uint8)
    digits[:, :32] = uuid4_digits(rng, n)
    digits[:, 32] = ord("-")
    return digits[:, _UUID_LAYOUT]


def uuid4_strings(rng: np.random.Generator, n: int, name: str = "event_id") -> pl.Series:
    """`n` random version-4 UUIDs (canonical lowercase text) drawn from `rng`."""
    return text_series(uuid4_chars(rng, n), name)


_DIGIT_PAIRS = np.array([(48 + i // 10) | ((48 + i % 10) << 8) for i in range(100)], dtype=np.uint16)
"""0..99 -> its two ASCII digits, as one little-endian uint16."""


def decimal_chars(values: np.ndarray, width: int) -> np.ndarray:
    """Non-negative integers of exactly `width` digits as an (n, width) uint8 array of ASCII digits."""
    values = np.asarray(values, dtype=np.int64)
    if len(values) and (values.min() < 10 ** (width - 1) or values.max() >= 10**width):
        raise ValueError(f"values must have exactly {width} digits")
    pairs = -(-width // 2)
    out = np.empty((len(values), pairs), dtype=np.uint16)
    # Two 32-bit halves: numpy divides uint32 much faster than int64.
    low_pairs = min(pairs, 4)
    high = (values // 10 ** (2 * low_pairs)).astype(np.uint32)
    low = (values % 10 ** (2 * low_pairs)).astype(np.uint32)
    for i in range(low_pairs):
        out[:, pairs - 1 - i] = _DIGIT_PAIRS[(low // np.uint32(100**i)) % np.uint32(100)]
    for i in range(pairs - low_pairs):
        out[:, pairs - low_pairs - 1 - i] = _DIGIT_PAIRS[(high // np.uint32(100**i)) % np.uint32(100)]
    chars = out.view(np.uint8)
    return chars[:, 2 * pairs - width :]


def splitmix64(values: np.ndarray) -> np.ndarray:
    """SplitMix64 finalizer: a bijection on uint64 that scatters counters into random-looking ids."""
    with np.errstate(over="ignore"):
        z = (values.astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15)) & _MASK64
        z = ((z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)) & _MASK64
        z = ((z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)) & _MASK64
        return z ^ (z >> np.uint64(31))


def hex_chars(numbers: np.ndarray, namespace: int) -> np.ndarray:
    """16-hex-digit ids for `numbers` (counters) in `namespace`, as an (n, 16) uint8 array.

    Distinct counters give distinct ids within a namespace (SplitMix64 is a bijection).
    """
    mixed = splitmix64(np.asarray(numbers, dtype=np.uint64) ^ np.uint64(namespace & 0xFFFFFFFFFFFFFFFF))
    return _hex_of_bytes(mixed.astype(">u8").view(np.uint8).reshape(-1, 8))


def hex_ids(numbers: np.ndarray, namespace: int, name: str = "id") -> pl.Series:
    """:func:`hex_chars` as a Polars String series."""
    return text_series(hex_chars(numbers, namespace), name)


def namespace(seed: int, kind: str) -> int:
    """A 64-bit namespace for ids of `kind` ("user", "session", ...) under `seed`."""
    digest = int.from_bytes(kind.encode().ljust(8, b"_")[:8], "big")
    mixed = ((seed * 0x100000001B3) ^ digest) & 0xFFFFFFFFFFFFFFFF
    return int(splitmix64(np.array([mixed], dtype=np.uint64))[0])
