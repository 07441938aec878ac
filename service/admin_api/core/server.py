"""The HTTP server's own defences, below the app: read deadlines and a header size limit.

uvicorn has no timeout for reading a request: a client trickling its headers or its body one byte every
few seconds holds a connection (and, for the body, a request task) forever; its httptools parser also takes
headers of any size. `guarded_httptools(...)` is uvicorn's httptools protocol (llhttp, in C: about twice the
requests per second of its pure-Python h11 protocol) with two deadlines and a size limit: the headers must
arrive within `header_timeout` of the connection opening (or of the first byte of the next request on a
kept-alive connection) and be at most `max_header_bytes`, and the body must arrive within `body_timeout` of
the headers. Past a deadline the client gets a 408 and the connection is closed (an app waiting on the body
sees a disconnect); past the size, a 431.
"""

from __future__ import annotations

import asyncio
import enum

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


def _refusal(status: bytes, detail: bytes) -> bytes:
    return (
        b"HTTP/1.1 " + status + b"\r\ncontent-type: application/json\r\nconnection: close\r\n"
        b"content-length: " + str(len(detail)).encode() + b"\r\n\r\n" + detail
    )


TIMEOUT_RESPONSE = _refusal(b"408 Request Timeout", b'{"detail":"The request was not sent in time."}')
HEADERS_TOO_LARGE_RESPONSE = _refusal(b"431 Request Header Fields Too Large", b'{"detail":"Request headers too large."}')


class Phase(enum.Enum):
    HEADERS = "headers"  # waiting for (the rest of) a request's headers
    BODY = "body"  # headers in, the body still coming
    IDLE = "idle"  # the request is all in (uvicorn's keep-alive timeout watches an idle connection)


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    max_header_bytes: int = 16 * 1024

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._deadline: asyncio.TimerHandle | None = None
        self._phase = Phase.HEADERS
        self._header_bytes = 0  # received of the current request's headers, before this packet
        super().connection_made(transport)
        self._arm(self.header_timeout)

    def data_received(self, data: bytes) -> None:
        if self._phase is Phase.IDLE:  # the first bytes of the next request
            self._phase = Phase.HEADERS
        before = self._phase
        if before is Phase.HEADERS and self._header_bytes + len(data) > self.max_header_bytes:
            # Only here can the headers pass the limit: where do they end in this packet?
            end = data.find(b"\r\n\r\n")
            if self._header_bytes + (len(data) if end < 0 else end + 4) > self.max_header_bytes:
                return self._refuse(HEADERS_TOO_LARGE_RESPONSE)
        super().data_received(data)  # the parser's callbacks below move the phase on
        after = self._phase
        if after is Phase.HEADERS:
            if self._deadline is None:
                self._arm(self.header_timeout)
            self._header_bytes += len(data)
        elif after is Phase.BODY and before is not Phase.BODY:
            self._arm(self.body_timeout)
        elif after is Phase.IDLE:
            self._disarm()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._phase = Phase.HEADERS
        self._header_bytes = 0

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        self._phase = Phase.BODY

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._phase = Phase.IDLE

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self, seconds: float) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(seconds, self._too_slow)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _too_slow(self) -> None:
        self._deadline = None
        if not self.transport.is_closing():
            self.logger.info("request not received in time: connection closed", extra={"phase": self._phase.value})
            self._refuse(TIMEOUT_RESPONSE)

    def _refuse(self, response: bytes) -> None:
        """Answer `response` where no answer is under way, and close: an app waiting on the body sees a
        disconnect, and what it still sends is dropped."""
        self._disarm()
        cycle = self.cycle
        if self._phase is Phase.BODY:  # the cycle is this request's
            if not cycle.response_started:
                self.transport.write(response)
            if not cycle.response_complete:
                cycle.disconnected = True
                cycle.message_event.set()
        elif cycle is None or cycle.response_complete:  # in HEADERS, the cycle (if any) is the last request's
            self.transport.write(response)
        self.transport.close()


def guarded_httptools(*, header_timeout: float, body_timeout: float, max_header_bytes: int) -> type[GuardedHttpToolsProtocol]:
    """The protocol class for uvicorn's `http=` with these limits."""
    return type(
        "GuardedHttpToolsProtocol",
        (GuardedHttpToolsProtocol,),
        {"header_timeout": header_timeout, "body_timeout": body_timeout, "max_header_bytes": max_header_bytes},
    )
