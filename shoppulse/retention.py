"""Retention of Dagster's own metadata at a 5-second cadence (plain policy; `assets/retention.py` applies it).

At one rollup run per partition every few seconds, Dagster's run storage, event log and check history
grow by tens of thousands of rows a day. The policy keeps recent history, keeps failures longer, and
never deletes what the UI and automation still need: unfinished runs, and the run (or runless event)
holding the latest materialization or check result of each asset partition. Sensor and schedule ticks
are purged by the daemon (`retention:` in dagster.yaml).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

DAY_SECONDS = 86_400.0
SUCCESS = "SUCCESS"
FAILED = frozenset({"FAILURE", "CANCELED"})
FINISHED = FAILED | {SUCCESS}


@dataclass(frozen=True)
class RetentionPolicy:
    """How long Dagster metadata is kept, in days."""

    successful_runs_days: float = 2.0
    failed_runs_days: float = 7.0
    asset_events_days: float = 2.0
    """Superseded runless asset events (the drain sensor's raw_events reports) and check results."""
    batch_size: int = 2_000
    """Most deletions of each kind per pass (a pass runs every few minutes; backlogs drain over passes)."""

    def oldest_kept(self, now: float, status: str) -> float:
        days = self.failed_runs_days if status in FAILED else self.successful_runs_days
        return now - days * DAY_SECONDS


@dataclass(frozen=True)
class RunInfo:
    run_id: str
    status: str
    finished_at: float | None
    """Epoch seconds the run ended (None: not finished)."""


def runs_to_delete(runs: Iterable[RunInfo], protected: set[str], now: float, policy: RetentionPolicy) -> list[str]:
    """Finished runs older than the policy allows, except `protected` ones (holders of latest results)."""
    doomed = []
    for run in runs:
        if run.status not in FINISHED or run.finished_at is None or run.run_id in protected:
            continue
        if run.finished_at < policy.oldest_kept(now, run.status):
            doomed.append(run.run_id)
        if len(doomed) >= policy.batch_size:
            break
    return doomed


@dataclass(frozen=True)
class StoredEvent:
    """An asset event (or check result) row: what it is about and when."""

    storage_id: int
    subject: tuple[str, ...]
    """What "latest" is per: (asset key, partition) for materializations, + check name for checks."""
    timestamp: float


def superseded_events(events: Iterable[StoredEvent], now: float, policy: RetentionPolicy) -> list[int]:
    """Storage ids of events older than the policy that are not the newest of their subject."""
    newest: dict[tuple[str, ...], int] = {}
    rows = list(events)
    for event in rows:
        if event.storage_id > newest.get(event.subject, -1):
            newest[event.subject] = event.storage_id
    cutoff = now - policy.asset_events_days * DAY_SECONDS
    doomed = [e.storage_id for e in rows if e.timestamp < cutoff and newest[e.subject] != e.storage_id]
    return sorted(doomed)[: policy.batch_size]
