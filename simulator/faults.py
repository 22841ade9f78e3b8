"""Fault injection: what goes wrong between a shop's clients and Kafka, each at a configurable rate.

* **duplicate**: an event is sent again (same bytes, same key) 1-30 s later, as a client retry would.
* **out of order**: an event is sent right after the next event of its session (pairs of adjacent
  events of a session are swapped), so a consumer sees them out of event-time order.
* **late**: the event's ``event_ts`` is earlier than the Kafka timestamp of its message by
  ``late_delay`` (within the lateness horizon) or by horizon + 24 h (beyond it), as from a client that
  buffered it offline. A share ``late_beyond_share`` of late events is beyond the horizon.
* **malformed**: extra messages that no consumer may accept, each of one class (see
  :data:`MALFORMED_KINDS`); they get fresh event ids so they never collide with a real event.
* **schema v2**: a share of sessions send schema_version 2 events (with ``experiment_variant``);
  these are valid events.

Rates are per generated event. Decisions use their own random stream, so turning a fault on or off
never changes the shop's traffic itself (same users, sessions, orders).

**Incidents** are different: they change the traffic itself, for a stretch of time, so the alert
detector has something to find. An *outage* stops (factor 0) or thins (0 < factor < 1) the sessions
starting in it; a *spike* multiplies them (factor > 1). They act on the calendar's session arrival
rate, minute by minute; sessions already under way carry on. The ground truth's `run.incidents` says
when each one was.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import polars as pl

from shoppulse.contract.events import EventType
from simulator.ids import uuid4_chars
from simulator.model import HOUR_MS, WindowEvents

MALFORMED_KINDS: tuple[str, ...] = (
    "invalid_json",
    "wrong_type",
    "invalid_utf8",
    "oversized",
    "unsupported_schema_version",
    "invalid_value",
)
"""Classes of malformed messages (named like the drain's quarantine reason codes):

invalid_json: a truncated JSON object; wrong_type: a number sent as a string (an ISO date for
event_ts, "1" for schema_version); invalid_utf8: a byte that is not UTF-8 inside a string;
oversized: a valid event padded beyond the message size limit; unsupported_schema_version:
schema_version 3; invalid_value: valid JSON and types, but a value the contract forbids."""

KIND_EVENT, KIND_DUPLICATE, KIND_MALFORMED = 0, 1, 2
LATE_NONE, LATE_WITHIN, LATE_BEYOND = 0, 1, 2
BEYOND_MARGIN_MS = 24 * HOUR_MS
"""Beyond-horizon late events are this much older than the horizon: never borderline."""
RESEND_DELAY_MS = (1_000, 30_000)
EVENT_ID_SPAN = slice(13, 49)  # every payload starts with {"event_id":"<36 chars>"


INCIDENT_KINDS = ("outage", "spike")
MINUTE_MS = 60_000


@dataclass(frozen=True)
class Incident:
    """Session arrivals × `factor` for the minutes starting in [start_ms, end_ms) (whole minutes)."""

    kind: str
    start_ms: int
    end_ms: int
    factor: float

    def __post_init__(self) -> None:
        if self.kind not in INCIDENT_KINDS:
            raise ValueError(f"incident kind must be one of {', '.join(INCIDENT_KINDS)}, got {self.kind!r}")
        if self.end_ms <= self.start_ms:
            raise ValueError("an incident must end after it starts")
        if self.kind == "outage" and not 0.0 <= self.factor < 1.0:
            raise ValueError(f"an outage's factor must be within [0, 1), got {self.factor}")
        if self.kind == "spike" and not self.factor > 1.0:
            raise ValueError(f"a spike's factor must be above 1, got {self.factor}")

    def factors(self, minutes: np.ndarray) -> np.ndarray:
        """This incident's factor for each epoch minute (1 outside it)."""
        inside = (minutes * MINUTE_MS >= self.start_ms) & (minutes * MINUTE_MS < self.end_ms)
        return np.where(inside, self.factor, 1.0)

    def describe(self) -> dict[str, object]:
        return {
            "kind": self.kind,
            "start": _iso(self.start_ms),
            "end": _iso(self.end_ms),
            "start_ms": self.start_ms,
            "end_ms": self.end_ms,
            "factor": self.factor,
        }


@dataclass(frozen=True)
class FaultConfig:
    """Fault rates (per generated event) and their parameters."""

    duplicate_rate: float = 0.0
    out_of_order_rate: float = 0.0
    late_rate: float = 0.0
    late_delay_ms: int = 2 * HOUR_MS
    late_beyond_share: float = 0.25
    lateness_horizon_ms: int = 72 * HOUR_MS
    malformed_rate: float = 0.0
    malformed_kinds: tuple[str, ...] = MALFORMED_KINDS
    v2_rate: float = 0.0
    max_event_bytes: int = 65_536

    def __post_init__(self) -> None:
        for name in ("duplicate_rate", "out_of_order_rate", "late_rate", "malformed_rate", "v2_rate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be within [0, 1], got {value}")
        if not 0.0 <= self.late_beyond_share <= 1.0:
            raise ValueError("late_beyond_share must be within [0, 1]")
        if not 0 < self.late_delay_ms <= self.lateness_horizon_ms - HOUR_MS:
            raise ValueError("late_delay must be positive and at least 1 h inside the lateness horizon")
        unknown = set(self.malformed_kinds) - set(MALFORMED_KINDS)
        if unknown or not self.malformed_kinds:
            raise ValueError(f"malformed kinds must be a non-empty subset of {', '.join(MALFORMED_KINDS)}")

    @property
    def beyond_delay_ms(self) -> int:
        return self.lateness_horizon_ms + BEYOND_MARGIN_MS

    @property
    def any(self) -> bool:
        return any((self.duplicate_rate, self.out_of_order_rate, self.late_rate, self.malformed_rate, self.v2_rate))

    def describe(self) -> dict[str, object]:
        return {
            "duplicate_rate": self.duplicate_rate,
            "out_of_order_rate": self.out_of_order_rate,
            "late_rate": self.late_rate,
            "late_delay_ms": self.late_delay_ms,
            "late_beyond_share": self.late_beyond_share,
            "late_beyond_delay_ms": self.beyond_delay_ms,
            "lateness_horizon_ms": self.lateness_horizon_ms,
            "malformed_rate": self.malformed_rate,
            "malformed_kinds": list(self.malformed_kinds),
            "v2_rate": self.v2_rate,
            "max_event_bytes": self.max_event_bytes,
        }


@dataclass(frozen=True)
class EventDecisions:
    """Per event type, per event: how much earlier event_ts is written, its late class, its v2 variant.

    `session_variant` is the variant of each shopper session (its events share it); 0 = schema v1.
    """

    late_delay_ms: dict[EventType, np.ndarray]
    late_kind: dict[EventType, np.ndarray]
    variant: dict[EventType, np.ndarray]
    session_variant: np.ndarray


class FaultInjector:
    """Applies a FaultConfig to windows of events, with its own random stream."""

    def __init__(self, config: FaultConfig, seed: int) -> None:
        self.config = config
        self.rng = np.random.default_rng(np.random.SeedSequence([seed, 3]))

    # --- before encoding: late and schema v2 ---------------------------------------------------
    def decide(self, events: WindowEvents) -> EventDecisions:
        """Late and schema-v2 decisions for every event of a window (before it is encoded)."""
        cfg, rng = self.config, self.rng
        n_sessions = events.sessions.height
        v2_session = rng.random(n_sessions) < cfg.v2_rate if cfg.v2_rate else np.zeros(n_sessions, dtype=bool)
        # A user stays in one arm of each experiment; v2 events name one of the user's arms.
        session_variant = np.where(v2_session, 1 + events.sessions["user"].to_numpy() % 4, 0).astype(np.uint8)
        delays, kinds, variants = {}, {}, {}
        for event_type, frame in events.frames.items():
            n = frame.height
            if "srow" in frame.columns:
                variants[event_type] = session_variant[frame["srow"].to_numpy()]
            else:  # backend events decide for themselves
                v2 = rng.random(n) < cfg.v2_rate if cfg.v2_rate else np.zeros(n, dtype=bool)
                variants[event_type] = np.where(v2, 1 + frame["user"].to_numpy() % 4, 0).astype(np.uint8)
            kind = np.zeros(n, dtype=np.uint8)
            if cfg.late_rate:
                late = rng.random(n) < cfg.late_rate
                beyond = rng.random(n) < cfg.late_beyond_share
                kind = np.where(late, np.where(beyond, LATE_BEYOND, LATE_WITHIN), LATE_NONE).astype(np.uint8)
            kinds[event_type] = kind
            delays[event_type] = np.select(
                [kind == LATE_WITHIN, kind == LATE_BEYOND], [cfg.late_delay_ms, cfg.beyond_delay_ms], default=0
            ).astype(np.int64)
        return EventDecisions(late_delay_ms=delays, late_kind=kinds, variant=variants, session_variant=session_variant)

    # --- after encoding: delivery order, re-sends, malformed extras ----------------------------
    def arrange(self, encoded: pl.DataFrame) -> pl.DataFrame:
        """Messages of one window (MESSAGE_SCHEMA), with out-of-order, duplicate and malformed faults.

        No two messages of a session are sent in the same millisecond (steps are >= 300 ms apart, a
        displaced event goes 1 ms after its successor, a re-send >= 1 s later), so a stable sort on
        release_ts alone puts every session in the intended order.
        """
        cfg, rng = self.config, self.rng
        n = encoded.height
        release = encoded["ts"].to_numpy()
        displaced = np.zeros(n, dtype=bool)
        if cfg.out_of_order_rate and n:
            release, displaced = self._swap_pairs(encoded, release)
        messages = encoded.with_columns(
            pl.Series("release_ts", release),
            pl.lit(KIND_EVENT, dtype=pl.UInt8).alias("kind"),
            pl.lit(None, dtype=pl.Binary).alias("bad"),
            pl.lit(0, dtype=pl.UInt8).alias("malformed"),
            pl.Series("out_of_order", displaced),
        )
        extras = [messages]
        if cfg.duplicate_rate and n:
            picked = np.flatnonzero(rng.random(n) < cfg.duplicate_rate)
            delay = rng.integers(RESEND_DELAY_MS[0], RESEND_DELAY_MS[1] + 1, len(picked))
            extras.append(
                messages[picked].with_columns(
                    pl.col("release_ts") + pl.Series(delay),
                    pl.lit(KIND_DUPLICATE, dtype=pl.UInt8).alias("kind"),
                    pl.lit(False).alias("out_of_order"),
                )
            )
        if cfg.malformed_rate and n:
            extras.append(self._malformed(messages))
        return pl.concat(extras, how="vertical").select(list(MESSAGE_SCHEMA))

    def _swap_pairs(self, encoded: pl.DataFrame, release: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Send the first event of some (event, next event) pairs of a session 1 ms after the second."""
        rng = self.rng
        n = encoded.height
        session = encoded["session"].to_numpy()
        order = encoded.select(pl.arg_sort_by("session", "ts", maintain_order=True)).to_series().to_numpy()
        s_sorted = session[order]
        new_group = np.r_[True, s_sorted[1:] != s_sorted[:-1]]
        group_start = np.maximum.accumulate(np.where(new_group, np.arange(n), 0))
        rank = np.arange(n) - group_start
        has_next = np.r_[s_sorted[1:] == s_sorted[:-1], False]
        first_of_pair = (rank % 2 == 0) & has_next & (s_sorted >= 0)
        candidates = np.flatnonzero(first_of_pair)
        if len(candidates) == 0:
            return release, np.zeros(n, dtype=bool)
        chance = min(1.0, self.config.out_of_order_rate * n / len(candidates))
        chosen = candidates[rng.random(len(candidates)) < chance]
        first, second = order[chosen], order[chosen + 1]
        release = release.copy()
        release[first] = release[second] + 1
        displaced = np.zeros(n, dtype=bool)
        displaced[first] = True
        return release, displaced

    def _malformed(self, messages: pl.DataFrame) -> pl.DataFrame:
        """Extra messages derived from random events of the window, each broken in one way."""
        cfg, rng = self.config, self.rng
        count = int(rng.binomial(messages.height, cfg.malformed_rate))
        templates = messages[np.sort(rng.integers(0, messages.height, count))]
        kinds = rng.integers(0, len(cfg.malformed_kinds), count)
        fresh_ids = uuid4_chars(rng, count)
        bad = [
            malform(payload.encode(), cfg.malformed_kinds[k], rng, fresh_ids[i].tobytes(), cfg.max_event_bytes)
            for i, (payload, k) in enumerate(zip(templates["payload"].to_list(), kinds.tolist(), strict=True))
        ]
        codes = [MALFORMED_KINDS.index(cfg.malformed_kinds[k]) + 1 for k in kinds.tolist()]
        return templates.with_columns(
            pl.lit(KIND_MALFORMED, dtype=pl.UInt8).alias("kind"),
            pl.Series("bad", bad, dtype=pl.Binary),
            pl.Series("malformed", codes, dtype=pl.UInt8),
            pl.lit("").alias("payload"),
            pl.lit(False).alias("out_of_order"),
        )


TYPICAL_FAULTS = FaultConfig(
    duplicate_rate=0.01, out_of_order_rate=0.01, late_rate=0.01, malformed_rate=0.005, v2_rate=0.05
)
"""The fault mix benchmarks and end-to-end tests use: a bad day, not a disaster."""


MESSAGE_SCHEMA: dict[str, pl.DataType] = {
    "release_ts": pl.Int64(),
    "key": pl.String(),
    "payload": pl.String(),
    "bad": pl.Binary(),
    "kind": pl.UInt8(),
    "malformed": pl.UInt8(),
    "event_ts": pl.Int64(),
    "late": pl.UInt8(),
    "v2": pl.Boolean(),
    "out_of_order": pl.Boolean(),
}
"""One row per Kafka message. release_ts is when it is sent (its Kafka timestamp); payload holds the
JSON text of events and duplicates, bad the bytes of a malformed message (kind 2, class
MALFORMED_KINDS[malformed - 1])."""


def _iso(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def malform(payload: bytes, kind: str, rng: np.random.Generator, event_id: bytes, max_event_bytes: int) -> bytes:
    """A broken copy of a valid event `payload` (with `event_id` in place of its own)."""
    raw = payload[: EVENT_ID_SPAN.start] + event_id + payload[EVENT_ID_SPAN.stop :]
    if kind == "invalid_json":
        return raw[: int(rng.integers(1, len(raw) - 1))]  # any proper prefix of an object is not JSON
    if kind == "wrong_type":
        marker = b'"event_ts":'
        start = raw.index(marker) + len(marker)
        end = raw.index(b",", start)
        if rng.random() < 0.5:
            return raw[:start] + b'"' + _iso(int(raw[start:end])).encode() + b'"' + raw[end:]
        return raw.replace(b'"schema_version":1', b'"schema_version":"1"').replace(
            b'"schema_version":2', b'"schema_version":"2"'
        )
    if kind == "invalid_utf8":
        position = EVENT_ID_SPAN.start + int(rng.integers(0, 36))
        return raw[:position] + bytes([0xFF if rng.random() < 0.5 else 0xC3]) + b"\x28" + raw[position + 1 :]
    if kind == "oversized":
        target = max_event_bytes + 1 + int(rng.integers(0, 1024))
        filler = b"x" * max(target - len(raw) - len(b',"padding":""'), 0)
        return raw[:-1] + b',"padding":"' + filler + b'"}'
    if kind == "unsupported_schema_version":
        return raw.replace(b'"schema_version":1', b'"schema_version":3', 1).replace(
            b'"schema_version":2', b'"schema_version":3', 1
        )
    if kind == "invalid_value":
        for device in (b'"device":"desktop"', b'"device":"mobile"', b'"device":"tablet"'):
            raw = raw.replace(device, b'"device":"smartwatch"')
        return raw
    raise ValueError(f"unknown malformed kind {kind!r}")
