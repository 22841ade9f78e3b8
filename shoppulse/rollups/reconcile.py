"""Converge without a human: find rollup partitions whose ledger lags the lake, and decide which to rerun.

A rollup partition is *caught up* when its ledger row (`analytics.materializations`) records the lake
version of what it reads: the events partition of its day (sales, products, funnel, customers), the
newest of the 30 events partitions ending with its day (users), or the newer of its received day's
quarantine and late partitions (ingest_quality). Anything else lags: a run was killed, failed, or was
never requested.

`plan` turns the lagging partitions into run requests with exponential backoff per partition, so a
partition that keeps failing is retried ever less often (never more than once per `max_delay`) instead
of looping; a partition with a queued or running run is left to it. The plan's state is plain JSON (the
sensor's cursor). The only lake-facing function is `lake_partition_versions`.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field

import psycopg

from shoppulse.lake.changes import partition_change_versions
from shoppulse.lake.layout import LakeTable
from shoppulse.lake.table import LakeRef
from shoppulse.metrics import MAU_DAYS
from shoppulse.rollups import catalog
from shoppulse.rollups.catalog import SCHEMA

SAME_DAY = (catalog.SALES, catalog.PRODUCTS, catalog.FUNNEL, catalog.CUSTOMERS)
RECONCILED = (*SAME_DAY, catalog.USERS, catalog.INGEST_QUALITY)
"""Assets whose lag the reconciler watches (fx_rates has no lake input; it rides along with sales)."""


def lake_partition_versions(lake: LakeRef) -> dict[LakeTable, dict[dt.date, int]]:
    """Per record kind, the newest table version that added rows to each partition that exists.

    The one lake-facing function of the reconciler: a rollup that read a partition records the table
    version it pinned (never older than the partition's last change), so a caught-up ledger row records
    at least this version. A partition last changed before the oldest Delta log entry shows 0 (caught up
    as soon as it has a ledger row).
    """
    return partition_change_versions(lake).versions


def expected_versions(
    versions: Mapping[LakeTable, Mapping[dt.date, int]], first: dt.date, last: dt.date
) -> dict[str, dict[dt.date, int]]:
    """Asset -> partition -> the lake version a caught-up ledger row records, for partitions in [first, last]."""
    events = versions.get(LakeTable.EVENTS, {})
    expected: dict[str, dict[dt.date, int]] = {asset: {} for asset in RECONCILED}
    for day, version in events.items():
        if first <= day <= last:
            for asset in SAME_DAY:
                expected[asset][day] = version
        for offset in range(MAU_DAYS):  # users of day D read the events of D-29 .. D
            later = day + dt.timedelta(days=offset)
            if first <= later <= last:
                expected[catalog.USERS][later] = max(expected[catalog.USERS].get(later, 0), version)
    for table in (LakeTable.QUARANTINE, LakeTable.LATE):
        for day, version in versions.get(table, {}).items():
            if first <= day <= last:
                expected[catalog.INGEST_QUALITY][day] = max(expected[catalog.INGEST_QUALITY].get(day, 0), version)
    return expected


def ledger_versions(conn: psycopg.Connection, assets: Collection[str] = RECONCILED) -> dict[str, dict[dt.date, int]]:
    """Asset -> partition -> lake version recorded in the ledger."""
    found: dict[str, dict[dt.date, int]] = {asset: {} for asset in assets}
    rows = conn.execute(
        f"SELECT asset, partition_date, lake_version FROM {SCHEMA}.materializations WHERE asset = ANY(%s)",
        (list(assets),),
    ).fetchall()
    for asset, day, version in rows:
        found[asset][day] = int(version)
    return found


@dataclass(frozen=True)
class Lag:
    asset: str
    day: dt.date
    ledger_version: int | None
    lake_version: int


def lagging(expected: Mapping[str, Mapping[dt.date, int]], ledger: Mapping[str, Mapping[dt.date, int]]) -> list[Lag]:
    """Every (asset, partition) whose ledger row is missing or older than the lake version it should record."""
    lags = []
    for asset, days in expected.items():
        recorded = ledger.get(asset, {})
        for day, version in days.items():
            have = recorded.get(day)
            if have is None or have < version:
                lags.append(Lag(asset, day, have, version))
    return sorted(lags, key=lambda lag: (lag.day, lag.asset))


@dataclass
class Attempts:
    """The reconciler's memory of one lagging partition: the lake versions it must reach (`targets`, per
    asset, as first seen lagging), since when, how many runs were requested, and when the next may be."""

    targets: dict[str, int]
    lagging_since: float
    attempts: int = 0
    next_at: float = 0.0

    def to_json(self) -> dict[str, object]:
        return {
            "targets": self.targets,
            "since": self.lagging_since,
            "attempts": self.attempts,
            "next_at": self.next_at,
        }

    @staticmethod
    def from_json(data: Mapping[str, object]) -> Attempts:
        targets = {str(a): int(v) for a, v in dict(data["targets"]).items()}  # type: ignore[call-overload]
        return Attempts(targets, float(data["since"]), int(data["attempts"]), float(data["next_at"]))  # type: ignore[arg-type]


@dataclass(frozen=True)
class Backoff:
    """First request `grace` seconds after a lag is first seen (the drain's own run usually catches it up
    first), then after `base`, 2·base, 4·base, … seconds, never more than `max_delay` apart."""

    grace: float = 20.0
    base: float = 30.0
    max_delay: float = 1800.0

    def delay(self, attempts: int) -> float:
        return min(self.base * 2 ** max(attempts - 1, 0), self.max_delay)


@dataclass
class Plan:
    """What one reconciler evaluation decided."""

    requests: dict[dt.date, list[str]] = field(default_factory=dict)
    """Partition -> assets to rerun now."""
    state: dict[dt.date, Attempts] = field(default_factory=dict)
    lags: list[Lag] = field(default_factory=list)
    in_flight: set[dt.date] = field(default_factory=set)

    def cursor(self) -> str:
        return dump_state(self.state)


def load_state(cursor: str | None) -> dict[dt.date, Attempts]:
    if not cursor:
        return {}
    return {dt.date.fromisoformat(day): Attempts.from_json(entry) for day, entry in json.loads(cursor).items()}


def dump_state(state: Mapping[dt.date, Attempts]) -> str:
    return json.dumps({day.isoformat(): entry.to_json() for day, entry in sorted(state.items())}, sort_keys=True)


def _reached(entry: Attempts, lags: Iterable[Lag]) -> bool:
    """Whether the ledger reached every version `entry` waited for (the lake may have moved on since)."""
    behind = {lag.asset: lag.ledger_version for lag in lags}
    return all(
        asset not in behind or (behind[asset] is not None and behind[asset] >= target)  # type: ignore[operator]
        for asset, target in entry.targets.items()
    )


def plan(
    lags: Iterable[Lag],
    state: Mapping[dt.date, Attempts],
    in_flight: Collection[dt.date],
    now: float,
    backoff: Backoff = Backoff(),
    max_requests: int = 8,
) -> Plan:
    """Which lagging partitions to rerun now (oldest first, at most `max_requests`), and the new state.

    A partition is only requested when its ledger has not reached, for `backoff.grace` seconds, the lake
    versions it lagged first: today's partitions, which lag the live lake by a commit most of the time
    but keep catching up, are never requested. A partition with a queued or running run is left to it;
    one that caught up is forgotten (its attempts start again from zero).
    """
    lags = list(lags)
    result = Plan(lags=lags, in_flight={lag.day for lag in lags if lag.day in in_flight})
    by_day: dict[dt.date, list[Lag]] = {}
    for lag in lags:
        by_day.setdefault(lag.day, []).append(lag)
    for day in sorted(by_day):
        day_lags = by_day[day]
        entry = state.get(day)
        if entry is None or _reached(entry, day_lags):
            targets = {lag.asset: lag.lake_version for lag in day_lags}
            entry = Attempts(targets, lagging_since=now, next_at=now + backoff.grace)
        else:
            entry = Attempts(dict(entry.targets), entry.lagging_since, entry.attempts, entry.next_at)
        result.state[day] = entry
        if day in in_flight or now < entry.next_at or len(result.requests) >= max_requests:
            continue
        assets = sorted({lag.asset for lag in day_lags})
        if catalog.SALES in assets:
            assets.append(catalog.FX_RATES)  # the conversion reads that day's rates
        result.requests[day] = sorted(assets)
        entry.attempts += 1
        entry.next_at = now + backoff.delay(entry.attempts)
    return result


def record_status(conn: psycopg.Connection, result: Plan) -> None:
    """Replace `analytics.rollup_reconcile` with this evaluation's lagging partitions (one transaction)."""
    rows = []
    for lag in result.lags:
        entry = result.state[lag.day]
        rows.append(
            (
                lag.asset,
                lag.day,
                lag.ledger_version,
                lag.lake_version,
                entry.attempts,
                lag.day in result.in_flight or lag.day in result.requests,
                dt.datetime.fromtimestamp(entry.lagging_since, dt.UTC),
                dt.datetime.fromtimestamp(entry.next_at, dt.UTC),
            )
        )
    with conn.transaction(), conn.cursor() as cur:
        cur.execute(f"DELETE FROM {SCHEMA}.rollup_reconcile")
        cur.executemany(
            f"""INSERT INTO {SCHEMA}.rollup_reconcile (asset, partition_date, ledger_version, lake_version, attempts,
                    in_flight, lagging_since, next_attempt_at, updated_at)
                VALUES (%s, %s, %s, %s, %s, %s, %s, %s, now())""",
            rows,
        )
