"""`GET /analytics/stream`: live updates as Server-Sent Events, fed by the rollups' NOTIFY.

One LISTEN connection per process (the cache's `NotifyListener`) publishes into `ServingState.changes`;
each stream reads its own bounded queue (see `shoppulse.serving.changes`). A browser's `EventSource`
reconnects by itself and sends `Last-Event-ID`; FastAPI sends a `: ping` comment every 15 s of silence
so proxies keep the connection open.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, HTTPException, Request
from fastapi.sse import EventSourceResponse, ServerSentEvent

from api.answer import serving
from shoppulse.serving.changes import Subscription, TooManyStreamsError

RECONNECT_MILLISECONDS = 2000
"""How long a browser waits before reconnecting a dropped stream (the SSE `retry` field)."""

STREAM_DESCRIPTION = """Server-Sent Events (`text/event-stream`), one per change of the serving tables:

* `ready` (first): `{"epoch", "streams"}`; its id is the newest event's (none when resuming).
* `materialized` (id `<epoch>-<seq>`): `{"asset", "partition", "at"}`: an asset's partition (a UTC date)
  was rewritten; answers that read it are new now.
* `reset` (with an id): `{"reason"}`: changes may have been missed (the database connection dropped or came
  back, the client resumed from an id this process does not hold, or it read too slowly): reload everything.

Send `Last-Event-ID` (browsers do on reconnect) to receive the events after that id. Past
`SHOPPULSE_API_MAX_STREAMS` open streams the answer is `503` with `Retry-After`.
"""


LastEventId = Annotated[
    str | None,
    Header(description="Resume after this event id (sent by browsers on reconnect).", examples=["5f3a9c01-42"]),
]


def open_subscription(request: Request, last_event_id: LastEventId = None) -> Subscription:
    try:
        return serving(request).changes.subscribe(last_event_id)
    except TooManyStreamsError as exc:
        raise HTTPException(
            503, detail=f"{exc} (SHOPPULSE_API_MAX_STREAMS); poll the endpoints instead", headers={"Retry-After": "30"}
        ) from exc


def _json_error(spec: dict[str, Any]) -> dict[str, Any]:
    """An error response documented as JSON (this route's own media type is text/event-stream)."""
    documented = {key: value for key, value in spec.items() if key != "model"}
    return {**documented, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}


def live_router(auth: bool, dependencies: list[Any], responses: dict[int | str, dict[str, Any]]) -> APIRouter:
    router = APIRouter(prefix="/analytics", dependencies=dependencies)
    shown = (401, 403, 429) if auth else (429,)
    stream_responses = {code: _json_error(responses[code]) for code in shown}
    stream_responses[503] = _json_error({"description": "Too many open streams.", "headers": responses[429]["headers"]})

    @router.get(
        "/stream",
        response_class=EventSourceResponse,
        tags=["operations"],
        summary="Live updates (Server-Sent Events) when the serving tables change",
        description=STREAM_DESCRIPTION,
        responses=stream_responses,
    )
    async def stream(
        request: Request,
        subscription: Annotated[Subscription, Depends(open_subscription)],
        last_event_id: LastEventId = None,
    ) -> AsyncIterator[ServerSentEvent]:
        feed = serving(request).changes
        # A new client starts at the feed's newest id, so that even before its first change it resumes
        # without loss on this process (or gets `reset` from another one); a resuming one keeps its id.
        ready_id = None if last_event_id else feed.position()
        try:
            yield ServerSentEvent(
                event="ready",
                id=ready_id,
                data={"epoch": feed.epoch, "streams": len(feed)},
                retry=RECONNECT_MILLISECONDS,
            )
            while True:
                change = await feed.next(subscription)
                yield ServerSentEvent(event=change.kind, id=change.id, data=change.payload())
        finally:
            feed.unsubscribe(subscription)

    return router
