"""Send new alerts to `SHOPPULSE_ALERT_WEBHOOK_URL`: one JSON POST per alert, delivery recorded on its row.

Semantics: **at least once**, bounded. An alert is POSTed until a 2xx answer is recorded
(`webhook_sent_at`), at most TRIES_PER_RUN (3) times per detector run (tenacity, exponential
backoff) and GIVE_UP_AFTER (12) times in all, and only while it is younger than MAX_AGE (24 h).
A restart never resends an alert whose delivery was recorded; an alert can be sent twice only if
the process dies between the receiver's 2xx and the recording of it (the body's `id` is stable, so
the receiver can drop the copy). Each alert's row is locked while it is sent (`FOR UPDATE SKIP
LOCKED`), so concurrent detector runs never send it at the same time.
"""

from __future__ import annotations

import datetime as dt
import json
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field

import psycopg
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from shoppulse.alerts.store import PUBLIC_COLUMNS, public_alert

USER_AGENT = "shoppulse-alerts/1"
TIMEOUT_SECONDS = 5.0
TRIES_PER_RUN = 3
GIVE_UP_AFTER = 12
"""POSTs in all after which an undelivered alert is given up (webhook_last_error says why)."""
MAX_AGE = dt.timedelta(hours=24)
"""Alerts detected longer ago are never sent (e.g. history evaluated before the webhook was set)."""


@dataclass
class DeliveryReport:
    sent: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)


def _post(url: str, body: bytes, tries: int, attempts: list[int]) -> None:
    """POST with retries on transport errors and non-2xx answers (urllib raises HTTPError for those);
    `attempts` counts the POSTs made. Redirects are not followed for a POST: a 3xx is a failure."""
    for attempt in Retrying(
        stop=stop_after_attempt(tries),
        wait=wait_exponential(multiplier=0.2, max=5),
        retry=retry_if_exception_type(OSError),  # URLError, HTTPError, timeouts, refused connections
        reraise=True,
    ):
        with attempt:
            attempts[0] += 1
            headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT}
            request = urllib.request.Request(url, data=body, method="POST", headers=headers)  # noqa: S310 (http(s) checked)
            with _OPENER.open(request, timeout=TIMEOUT_SECONDS) as response:
                if not 200 <= response.status < 300:
                    raise urllib.error.HTTPError(url, response.status, response.reason, response.headers, None)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)


def deliver_pending(conn: psycopg.Connection, url: str, now: dt.datetime) -> DeliveryReport:
    """Send every undelivered alert that is still young enough and not given up, oldest first."""
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        raise ValueError(f"SHOPPULSE_ALERT_WEBHOOK_URL must be an http:// or https:// URL, got {url!r}")
    report = DeliveryReport()
    candidates = conn.execute(
        "SELECT id FROM analytics.alerts WHERE webhook_sent_at IS NULL AND webhook_attempts < %s"
        " AND detected_at >= %s ORDER BY detected_at, id",
        (GIVE_UP_AFTER, now - MAX_AGE),
    ).fetchall()
    for (alert_id,) in candidates:
        with conn.transaction():
            row = conn.execute(
                f"SELECT {', '.join(PUBLIC_COLUMNS)}, webhook_attempts FROM analytics.alerts"
                " WHERE id = %s AND webhook_sent_at IS NULL FOR UPDATE SKIP LOCKED",
                (alert_id,),
            ).fetchone()
            if row is None:
                continue  # delivered or being delivered by another run
            body = json.dumps(public_alert(row[: len(PUBLIC_COLUMNS)])).encode()
            tries = min(TRIES_PER_RUN, GIVE_UP_AFTER - row[-1])
            attempts = [0]
            try:
                _post(url, body, tries, attempts)
            except OSError as exc:
                error = f"{type(exc).__name__}: {exc}"[:500]
                conn.execute(
                    "UPDATE analytics.alerts SET webhook_attempts = webhook_attempts + %s,"
                    " webhook_last_error = %s WHERE id = %s",
                    (attempts[0], error, alert_id),
                )
                report.failed[alert_id] = error
            else:
                conn.execute(
                    "UPDATE analytics.alerts SET webhook_attempts = webhook_attempts + %s, webhook_sent_at = %s,"
                    " webhook_last_error = NULL WHERE id = %s",
                    (attempts[0], dt.datetime.now(dt.UTC), alert_id),
                )
                report.sent.append(alert_id)
    return report
