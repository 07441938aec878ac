"""The HTTP server's own defences, below the app: read deadlines and a header size limit.

uvicorn has no timeout for reading a request: a client trickling its headers or its body one byte every
few seconds holds a connection (and, for the body, a request task) forever; its httptools parser also takes
headers of any size. `guarded_h11(...)` is uvicorn's h11 protocol (whose parser bounds the headers) with two
deadlines: the headers must arrive within `header_timeout` of the connection opening (or of the first byte
of the next request on a kept-alive connection), and the body within `body_timeout` of the headers. Past a
deadline the client gets a 408 and the connection is closed; an app waiting on the body sees a disconnect.
"""

from __future__ import annotations

import asyncio

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

TIMEOUT_RESPONSE = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\nconnection: close\r\n"
    b'content-length: 47\r\n\r\n{"detail": "The request was not sent in time."}'
)


class GuardedH11Protocol(H11Protocol):
    header_timeout: float = 10.0
    body_timeout: float = 30.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._deadline: asyncio.TimerHandle | None = None
        super().connection_made(transport)
        self._arm(self.header_timeout)

    def data_received(self, data: bytes) -> None:
        if self._deadline is None and self.conn.their_state is h11.IDLE:  # the next request begins
            self._arm(self.header_timeout)
        super().data_received(data)
        self._follow_request()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._follow_request()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _follow_request(self) -> None:
        state = self.conn.their_state
        if state is h11.SEND_BODY and self._phase == "headers":
            self._arm(self.body_timeout, phase="body")
        elif state is not h11.IDLE and state is not h11.SEND_BODY:  # DONE, closed or an error: nothing to wait on
            self._disarm()

    def _arm(self, seconds: float, phase: str = "headers") -> None:
        self._disarm()
        self._phase = phase
        self._deadline = self.loop.call_later(seconds, self._too_slow)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        self._phase = "headers"

    def _too_slow(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        self.logger.info("request not received in time: connection closed", extra={"phase": self._phase})
        cycle = self.cycle
        if cycle is None or not cycle.response_started:
            self.transport.write(TIMEOUT_RESPONSE)
        if cycle is not None and not cycle.response_complete:
            cycle.disconnected = True  # the app's receive() answers http.disconnect, its sends are dropped
            cycle.message_event.set()
        self.transport.close()


def guarded_h11(*, header_timeout: float, body_timeout: float) -> type[GuardedH11Protocol]:
    """The protocol class for uvicorn's `http=` with these deadlines."""
    return type(
        "GuardedH11Protocol",
        (GuardedH11Protocol,),
        {"header_timeout": header_timeout, "body_timeout": body_timeout},
    )
