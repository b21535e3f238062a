"""uvicorn's HTTP protocol with the guards it lacks against slow or greedy clients.

uvicorn's httptools parser reads a request's headers whole, however large, and no
timeout covers a client that sends half a request and waits (its keep-alive timeout
covers only the idle time between requests). :class:`GuardedHTTPProtocol` adds:

* ``max_header_bytes``: the request line and headers beyond it are answered 431 and the
  connection closed (counted per chunk read, so memory stays at the limit plus one chunk);
* ``request_timeout_s``: from the moment a connection opens, or the first byte of a new
  request arrives, the whole request (headers and body) must be in within it, else 408
  and the connection is closed;
* ``max_connections``: a connection beyond it is answered 503 and closed at once.

The limits are process-wide class attributes, set by :func:`configure` before the
server starts (in each worker, by the app factory).
"""

from __future__ import annotations

import json
from typing import Optional

from uvicorn.protocols.http.auto import AutoHTTPProtocol

from .config import Limits
from .limits import LIMITS
from .metrics import ERRORS

# Seconds a refused connection is kept to read and drop what its client still sends.
LINGER_S = 2.0
_REASONS = {408: "Request Timeout", 431: "Request Header Fields Too Large", 503: "Service Unavailable"}


def configure(limits: Limits) -> None:
    GuardedHTTPProtocol.max_header_bytes = limits.max_header_bytes
    GuardedHTTPProtocol.request_timeout_s = limits.request_timeout_s
    GuardedHTTPProtocol.max_connections = limits.max_connections


def uvicorn_options(limits: Limits) -> dict:
    """The options of ``uvicorn.run`` that carry the connection limits."""
    return {
        "http": "anygram_server.protocol:GuardedHTTPProtocol",
        # for the h11 parser (used where httptools is missing): its own header limit
        "h11_max_incomplete_event_size": limits.max_header_bytes,
        "timeout_keep_alive": limits.keep_alive_s,
    }


class GuardedHTTPProtocol(AutoHTTPProtocol):  # type: ignore[misc, valid-type]
    max_header_bytes: int = LIMITS["max_header_bytes"].default  # type: ignore[assignment]
    request_timeout_s: float = LIMITS["request_timeout_s"].default
    max_connections: int = LIMITS["max_connections"].default  # type: ignore[assignment]

    def connection_made(self, transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._in_headers = False
        self._header_bytes = 0
        self._refused = False
        self._read_timer = None
        self._cycle_at_arm = None
        if len(self.connections) > self.max_connections:
            self._refuse(
                503,
                "too_many_connections",
                f"the service has {self.max_connections:,} open connections, its limit; retry later",
                limit=self.max_connections,
            )
            return
        self._arm_read_timer()  # a client that connects must start sending

    def connection_lost(self, exc) -> None:
        self._disarm_read_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return  # answered and closing: dropped unread
        if self._read_timer is None:
            self._arm_read_timer()  # the first bytes of a request: it must be whole in time
        super().data_received(data)
        if self.transport.is_closing():
            return
        if self._in_headers:  # the parser holds the headers read so far
            self._header_bytes += len(data)
            if self._header_bytes > self.max_header_bytes:
                self._refuse_headers()
                return
        cycle = self.cycle
        if cycle is not None and cycle is not self._cycle_at_arm and not cycle.more_body:
            self._disarm_read_timer()  # the request is in; the time budget covers the answer

    # httptools' parser callbacks (the h11 protocol has none: its own limit applies)
    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_headers = True
        self._header_bytes = 0

    def on_headers_complete(self) -> None:
        self._in_headers = False
        # Headers that came in one chunk were not counted above: count them exactly.
        size = len(self.url) + sum(len(name) + len(value) + 4 for name, value in self.headers)
        if size > self.max_header_bytes:
            self._header_bytes = size
            # The parser turns this into a 400, which send_400_response makes our 431.
            raise ValueError("headers over the limit")
        super().on_headers_complete()

    def send_400_response(self, msg: str) -> None:
        if self._header_bytes > self.max_header_bytes:
            self._refuse_headers()
        else:
            super().send_400_response(msg)

    def _refuse_headers(self) -> None:
        self._refuse(
            431,
            "header_too_large",
            f"headers: {self._header_bytes:,} bytes or more; the limit is {self.max_header_bytes:,}",
            field="headers",
            limit=self.max_header_bytes,
        )

    def _arm_read_timer(self) -> None:
        self._cycle_at_arm = self.cycle
        self._read_timer = self.loop.call_later(self.request_timeout_s, self._read_timed_out)

    def _disarm_read_timer(self) -> None:
        if self._read_timer is not None:
            self._read_timer.cancel()
            self._read_timer = None

    def _read_timed_out(self) -> None:
        self._read_timer = None
        if self.transport.is_closing():
            return
        self._refuse(
            408,
            "request_timeout",
            f"the request did not arrive whole within {self.request_timeout_s:g} s",
            limit=self.request_timeout_s,
        )

    def _refuse(self, status: int, code: str, message: str, **extra) -> None:
        """Answers ``status`` with a JSON error and closes the connection."""
        self._disarm_read_timer()
        ERRORS.labels(code).inc()
        body = json.dumps({"error": message, "code": code, **extra}).encode()
        head = (
            f"HTTP/1.1 {status} {_REASONS[status]}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
        ).encode("ascii")
        self.transport.write(head + body)
        self._refused = True
        if not self.transport.can_write_eof():
            self.transport.close()
            return
        # Lingering close: send the answer and EOF, then drop what the client still sends for
        # a moment. Closing with its bytes unread would reset the connection, and a reset can
        # destroy the answer before the client reads it.
        self.transport.write_eof()
        self.transport.resume_reading()
        self.loop.call_later(LINGER_S, self.transport.close)
