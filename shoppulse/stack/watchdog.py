"""Watchdogs of `python -m shoppulse.stack run`: the drain (stalled = healed) and the backing services.

`DrainWatchdog` measures, every couple of seconds, the lake's lag behind the broker's high watermarks
(`shoppulse.lake.lag.broker_lag`, independent of the drain). When messages wait and the lake's offsets
have not moved for `drain_watchdog_stall_seconds` — whatever the cause: the code server's gRPC child
killed, a hung tick, a sensor that stopped evaluating — it heals, escalating: first it reloads the code
location through the webserver's GraphQL API (the code server starts a fresh gRPC child, as the UI's
"Reload" does), then, if the lake still does not move, it restarts the code server's whole process
group. It waits `drain_watchdog_grace_seconds` after each heal or (re)start before judging again.
Each check is written to HOME/run/drain-watchdog.json, which `/health/freshness` shows as `drain_watchdog`.

`ServiceWatch` notices a local Kafka broker or PostgreSQL server that died, says so loudly, and starts it
again with the same backoff and crash-loop limit as the app processes.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from shoppulse.lake import committed_offsets
from shoppulse.lake.lag import BrokerUnavailableError, IngestWatch, broker_lag
from shoppulse.serving.readiness import watchdog_state_path
from shoppulse.settings import Settings
from shoppulse.stack.apps import CrashLoopError
from shoppulse.stack.errors import StackError
from shoppulse.stack.kafka import LocalKafka
from shoppulse.stack.postgres import LocalPostgres
from shoppulse.stack.services import LOCATION_NAME

CHECK_EVERY_SECONDS = 2.0
MAX_HEALS_PER_STALL = 3
"""After this many heals of one stall, only report it: no restart helps a sensor switched off in the UI."""


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat()


class DrainWatchdog:
    """Detects a drain that stopped committing while Kafka holds newer messages, and heals it."""

    def __init__(
        self,
        settings: Settings,
        heals: list[Callable[[str], None]],
        code_server_started_at: Callable[[], float],
        # monotonic time the drain's processes last (re)started
        report: Callable[[str, bool], None],
    ) -> None:
        self.settings = settings
        self.heals = heals
        """Escalating remedies: the n-th heal of one stall uses heals[min(n, len - 1)]."""
        self.code_server_started_at = code_server_started_at
        self.healed_at = float("-inf")
        self.episode_heals = 0
        self.report = report
        self.watch = IngestWatch(settings.drain_watchdog_stall_seconds)
        self.next_check = 0.0
        self.state: dict[str, Any] = {"status": "starting", "stalls": 0, "heals": 0}
        self.stalled_since: float | None = None
        self.offsets_at_stall: dict[int, int] | None = None

    def check(self) -> None:
        """One check when due (cheap otherwise): measure, judge, heal, record."""
        if time.monotonic() < self.next_check:
            return
        self.next_check = time.monotonic() + CHECK_EVERY_SECONDS
        settings = self.settings
        state = self.state
        state["checked_at"] = _iso(time.time())
        try:
            offsets = committed_offsets(settings.lake_location, settings.events_topic)
            report = broker_lag(settings.bootstrap_servers, settings.events_topic, offsets, timeout=2.0)
        except BrokerUnavailableError as exc:
            state.update(status="broker unavailable", error=str(exc), total_lag=None)
            self._write()
            # No drain can move without a broker: its stall clock starts when the broker is back.
            self.watch = IngestWatch(settings.drain_watchdog_stall_seconds)
            return
        verdict = self.watch.observe(report)
        state.update(total_lag=report.total_lag, stalled_seconds=verdict.stalled_seconds, error=None)
        moved = report.lake_offsets != self.offsets_at_stall or report.total_lag == 0
        if verdict.stalled or (self.stalled_since is not None and not moved):
            if self.stalled_since is None:
                self.stalled_since = verdict.last_progress_at or report.measured_at
                self.offsets_at_stall = report.lake_offsets
                state["stalls"] += 1
                state["last_stall_at"] = _iso(self.stalled_since)
                self.report(
                    f"drain stalled: {report.total_lag} messages in Kafka, no lake commit for "
                    f"{verdict.stalled_seconds:.0f}s",
                    True,
                )
            since_start = time.monotonic() - max(self.code_server_started_at(), self.healed_at)
            if self.episode_heals >= MAX_HEALS_PER_STALL:
                if state["status"] != "stalled, not healing":
                    self.report(
                        f"drain still stalled after {self.episode_heals} heals: not healing any more "
                        "(is the kafka_drain sensor switched on? see the Dagster UI and the code server's log)",
                        True,
                    )
                state["status"] = "stalled, not healing"
                self._write()
                return
            if verdict.stalled and since_start >= settings.drain_watchdog_grace_seconds:
                reason = (
                    f"drain stalled ({report.total_lag} messages waiting, no lake commit for "
                    f"{verdict.stalled_seconds:.0f}s)"
                )
                state.update(status="healing", heals=state["heals"] + 1, last_heal_at=_iso(time.time()))
                state["last_heal_reason"] = reason
                self._write()
                heal = self.heals[min(self.episode_heals, len(self.heals) - 1)]
                self.episode_heals += 1
                try:
                    heal(reason)
                except StackError as exc:
                    self.report(f"healing the drain failed: {exc}", True)
                self.healed_at = time.monotonic()
                self.watch = IngestWatch(settings.drain_watchdog_stall_seconds)  # judge the new process afresh
                return
            state["status"] = "stalled"
        else:
            if self.stalled_since is not None:
                healed_in = round(report.measured_at - self.stalled_since, 1)
                state.update(last_recovered_at=_iso(report.measured_at), last_time_to_heal_seconds=healed_in)
                self.report(f"drain moving again {healed_in:.0f}s after it stalled (lag {report.total_lag})", False)
                self.stalled_since = self.offsets_at_stall = None
                self.episode_heals = 0
            state["status"] = "ok"
        self._write()

    def restart_grace(self) -> None:
        """A heal finished (e.g. the reload returned): give the drain the grace period from now."""
        self.healed_at = time.monotonic()

    def _write(self) -> None:
        path = watchdog_state_path(self.settings.home)
        path.parent.mkdir(parents=True, exist_ok=True)
        staging = path.with_suffix(".tmp")
        staging.write_text(json.dumps(self.state))
        staging.replace(path)

    def remove_state(self) -> None:
        watchdog_state_path(self.settings.home).unlink(missing_ok=True)


RELOAD_MUTATION = """
mutation Reload($location: String!) {
  reloadRepositoryLocation(repositoryLocationName: $location) {
    __typename
    ... on WorkspaceLocationEntry { locationOrLoadError { __typename ... on PythonError { message } } }
    ... on PythonError { message }
    ... on UnauthorizedError { message }
    ... on ReloadNotSupported { message }
    ... on RepositoryLocationNotFound { message }
  }
}
"""


def reload_code_location(webserver_url: str, location: str = LOCATION_NAME, timeout: float = 120.0) -> None:
    """Reload a code location through the Dagster webserver's GraphQL API (the UI's "Reload"): the code
    server starts a fresh gRPC child. Raises StackError when the webserver refuses or the reload fails."""
    body = json.dumps({"query": RELOAD_MUTATION, "variables": {"location": location}}).encode()
    if not webserver_url.startswith(("http://", "https://")):
        raise StackError(f"webserver URL must be http(s): {webserver_url!r}")
    request = urllib.request.Request(  # noqa: S310 - scheme checked above
        f"{webserver_url.rstrip('/')}/graphql", data=body, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - the stack's own URL
            answer = json.loads(response.read())
    except (urllib.error.URLError, ConnectionError, TimeoutError, ValueError) as exc:
        raise StackError(f"could not reload {location!r} via {webserver_url}: {exc}") from exc
    result = (answer.get("data") or {}).get("reloadRepositoryLocation") or {}
    loaded = result.get("locationOrLoadError") or {}
    if result.get("__typename") != "WorkspaceLocationEntry" or loaded.get("__typename") == "PythonError":
        detail = result.get("message") or loaded.get("message") or answer.get("errors") or result
        raise StackError(f"reloading {location!r} via {webserver_url} failed: {str(detail)[:300]}")


class ServiceWatch:
    """Restarts the local broker or database server when it dies (external services are not ours)."""

    def __init__(self, settings: Settings, report: Callable[[str, bool], None]) -> None:
        self.settings = settings
        self.report = report
        self.services: dict[str, Callable[[], Any]] = {}
        if not settings.external_kafka:
            self.services["kafka"] = lambda: LocalKafka(settings)
        if not settings.external_postgres:
            self.services["postgres"] = lambda: LocalPostgres(settings)
        self.deaths: dict[str, deque[float]] = {name: deque() for name in self.services}
        self.restarts: dict[str, int] = dict.fromkeys(self.services, 0)
        self.retry_at: dict[str, float] = {}

    def check(self) -> None:
        now = time.monotonic()
        for name, make in self.services.items():
            service = make()
            if name not in self.retry_at:
                if service.running_pid() is not None:
                    continue
                self._died(name, now, "its process is gone")
            if now < self.retry_at[name]:
                continue
            self.report(f"starting {name} again (restart #{self.restarts[name] + 1})", True)
            try:
                service.start()
            except StackError as exc:
                self._died(name, time.monotonic(), f"restart failed: {exc}")
                continue
            self.restarts[name] += 1
            del self.retry_at[name]
            self.report(f"{name} is back (restart #{self.restarts[name]})", True)

    def _died(self, name: str, now: float, how: str) -> None:
        window = self.settings.supervisor_crash_loop_window_seconds
        deaths = self.deaths[name]
        deaths.append(now)
        while deaths and now - deaths[0] > window:
            deaths.popleft()
        if len(deaths) > self.settings.supervisor_crash_loop_restarts:
            raise CrashLoopError(f"{name} keeps dying: {len(deaths)} times within {window:.0f}s, the last: {how}")
        delay = min(2.0 ** (len(deaths) - 1), self.settings.supervisor_backoff_max_seconds)
        self.retry_at[name] = now + delay
        self.report(f"{name.upper()} DIED ({how}); starting it again in {delay:.0f}s", True)
