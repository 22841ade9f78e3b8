"""uvicorn's httptools protocol with a request-head timeout and 400s that name the problem.

uvicorn (0.54) arms its keep-alive timer only after a response: a connection that never finishes its
request head (`printf 'GET /health\\r\\n' | nc ...`) is held forever, and a parse error answers a bare
"Invalid HTTP request received.". This protocol, selected with
`uvicorn --http api.http_protocol:GuardedHttpToolsProtocol`, adds:

* a head timer, armed when a connection opens and when the first byte of each request arrives;
  if the request line and headers are not complete within SHOPPULSE_API_HEADER_TIMEOUT_SECONDS, the
  server answers 408 and closes the connection (slowloris-style clients hold nothing for long);
* the parser's own reason in the 400 body (e.g. "Invalid HTTP request: Invalid method encountered").

Idle keep-alive connections are still closed by uvicorn's `--timeout-keep-alive`.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from shoppulse.settings import get_settings


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    head_timeout: float | None = None
    """Seconds; None = SHOPPULSE_API_HEADER_TIMEOUT_SECONDS (a subclass may fix it)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.head_timeout is None:
            self.head_timeout = get_settings().api_header_timeout_seconds
        self._head_timer: asyncio.TimerHandle | None = None
        self._awaiting_head = True

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as error:
            reason = str(error).encode("ascii", "replace").decode() or "malformed request"
            msg = f"Invalid HTTP request: {reason}"
            self.logger.warning(msg)
            self._cancel_head_timer()
            self.send_400_response(msg)
            return
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._awaiting_head = True  # the first byte of a request: its head must complete in time
        self._arm_head_timer()

    def on_headers_complete(self) -> None:
        self._awaiting_head = False
        self._cancel_head_timer()
        super().on_headers_complete()

    def _arm_head_timer(self) -> None:
        if self._head_timer is None and not self.transport.is_closing():
            self._head_timer = self.loop.call_later(self.head_timeout, self._head_timed_out)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if not self._awaiting_head or self.transport.is_closing():
            return
        body = f"request head not received within {self.head_timeout:g}s".encode()
        self.transport.write(
            b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\n"
            b"content-length: " + str(len(body)).encode() + b"\r\nconnection: close\r\n\r\n" + body
        )
        self.transport.close()
