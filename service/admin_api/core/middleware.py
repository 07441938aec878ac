"""The service's one middleware layer, pure ASGI (BaseHTTPMiddleware buffers and breaks streaming responses).

Every layer a request crosses costs every request (in process on /health/live, six layers once took a quarter of
the service's time, two a fifth, this one an eighth), so what the service does around its routes is one layer:
    request context    request id in and out, the guide's security headers (no-store on the API), request log
                       line, HTTP metrics
    error boundary     anything unhandled becomes a JSON 503/500, never a trace
    body limit         413 for bodies over MAX_BODY_BYTES (uploads: MAX_UPLOAD_BYTES), declared or streamed
    CSRF               cross-site writes 403, non-JSON write bodies 415 (but multipart to the upload route)
    HEAD               answered as GET without the body
Starlette's CORSMiddleware, only for CORS_ORIGINS, sits outside it (see main.build_middleware).
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Iterable, Mapping
from email.message import Message as MimeMessage
from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from admin_api.core.errors import internal_error_response, is_unavailable, unavailable_response
from admin_api.core.logging import request_id_var
from admin_api.core.metrics import Metrics

log = logging.getLogger("admin_api.request")

UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
REQUEST_ID_PATTERN = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
QUIET_PATHS = ("/health", "/metrics")  # probes and scrapes: logged at DEBUG only

SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Strict-Transport-Security": "max-age=31536000; includeSubDomains",
    "Referrer-Policy": "strict-origin-when-cross-origin",
    "Content-Security-Policy": "frame-ancestors 'none'",
}
# As ASGI raw headers, encoded once: these run on every response.
HEADER_DEFAULTS = tuple((name.lower().encode(), value.encode()) for name, value in SECURITY_HEADERS.items())
NO_STORE_DEFAULTS = (*HEADER_DEFAULTS, (b"cache-control", b"no-store"))
DEFAULT_NAMES = frozenset(name for name, _ in NO_STORE_DEFAULTS)


class TrackedSend:
    """An ASGI `send` that notes whether the response has started: after that, no error status can be sent."""

    def __init__(self, send: Send) -> None:
        self._send = send
        self.response_started = False

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.response_started = True
        await self._send(message)


class RequestBodyTooLarge(HTTPException):
    """Raised from `receive` when a streamed body passes the limit. An HTTPException so FastAPI's body
    reader lets it through (it wraps other exceptions into a 400) and answers it as JSON."""

    def __init__(self) -> None:
        super().__init__(status_code=413, detail="Request body too large.")


class RequestMiddleware:
    """What every request gets, what the routes must never see, and what they must never show.

    - Context: an id for each request (the client's X-Request-ID when it is sane), in the log's context and in the
      response; the deployment guide's security headers on every response (kept where a route set its own) and
      `Cache-Control: no-store` on API and health responses; one log line per request and the HTTP metrics, by
      route template.
    - Error boundary: an exception that escaped the routes becomes JSON, 503 when a backing service (PostgreSQL,
      Redis) is unreachable, 500 otherwise. The trace goes to the log, never to the client.
    - Body limit: 413 when Content-Length says the body is too large (before reading it), or when a body without a
      length (chunked) grows past the limit while the app reads it. `limits_by_path`: other limits for exact paths
      (the document upload).
    - CSRF: cookie-authenticated writes must come from our own site or an allowed origin, as JSON. Browsers send
      `Origin` (and `Sec-Fetch-Site`) on every cross-site write; an HTML form or a "simple" fetch from another site
      cannot send `application/json` without a CORS preflight, which CORSMiddleware only grants to CORS_ORIGINS.
      Clients that send neither header (curl, the guide's smoke tests, server-to-server) are not browsers and
      cannot carry a victim's cookie: allowed. `multipart_paths` (the document upload) take multipart/form-data
      instead (the route checks it), which an HTML form can send cross-site: there the origin check refuses it.
    - HEAD wherever GET exists (RFC 9110 asks for it; FastAPI routes only list GET): the GET route runs and its
      headers are sent, its body is not.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        metrics: Metrics,
        max_bytes: int,
        allowed_origins: Iterable[str],
        limits_by_path: Mapping[str, int] | None = None,
        api_prefix: str = "/api/",
        multipart_paths: Iterable[str] = (),
        no_store_prefixes: Iterable[str] = ("/api/", "/health"),
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.max_bytes = max_bytes
        self.limits_by_path = dict(limits_by_path or {})
        self.allowed_origins = frozenset(allowed_origins)
        self.api_prefix = api_prefix
        self.multipart_paths = frozenset(multipart_paths)
        self.no_store_prefixes = tuple(no_store_prefixes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        incoming = declared = chunked = None  # the three request headers read here, in one pass (the first of each)
        for name, value in scope["headers"]:
            if name == b"x-request-id" and incoming is None:
                incoming = value.decode("latin-1")
            elif name == b"content-length" and declared is None:
                declared = value.decode("latin-1")
            elif name == b"transfer-encoding":
                chunked = value
        request_id = incoming if incoming and REQUEST_ID_PATTERN.match(incoming) else os.urandom(16).hex()
        token = request_id_var.set(request_id)
        defaults = NO_STORE_DEFAULTS if scope["path"].startswith(self.no_store_prefixes) else HEADER_DEFAULTS
        request_id_header = (b"x-request-id", request_id.encode())
        status = None  # the response's, once it started: after that no error status can be sent
        started = time.perf_counter()

        async def send_with_headers(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = message.get("headers", ())
                present = [name for name, _ in headers]  # lower case, as ASGI asks
                if DEFAULT_NAMES.isdisjoint(present):
                    message["headers"] = [*headers, *defaults, request_id_header]
                else:  # a route set its own (the page's CSP): it wins
                    ours = [header for header in defaults if header[0] not in present]
                    message["headers"] = [*headers, *ours, request_id_header]
            await send(message)

        # A body without a declared length is counted as the app reads it; one of the declared length the server
        # never exceeds: nothing to count.
        limited = receive if chunked is None else _limited(receive, self._max_bytes(scope))
        try:
            refusal = self._refusal(scope, declared)
            if refusal is not None:
                await _json_error(*refusal, scope, receive, send_with_headers)
            elif scope["method"] == "HEAD":
                await _head_as_get(self.app, scope, limited, send_with_headers)
            else:
                await self.app(scope, limited, send_with_headers)
        except RequestBodyTooLarge:
            if status is not None:
                raise
            await _json_error(413, "Request body too large.", scope, receive, send_with_headers)
        except Exception as exc:
            if status is not None:  # too late for an error status; let the server close the connection
                raise
            if is_unavailable(exc):
                log.warning("backing service unavailable", extra={"error": type(exc).__name__})
                response = unavailable_response()
            else:
                log.exception("unhandled error")
                response = internal_error_response()
            await response(scope, receive, send_with_headers)
        finally:
            self._record(scope, 500 if status is None else status, time.perf_counter() - started)
            request_id_var.reset(token)

    def _max_bytes(self, scope: Scope) -> int:
        return self.limits_by_path.get(scope["path"], self.max_bytes)

    def _refusal(self, scope: Scope, declared: str | None) -> tuple[int, str] | None:
        """Why the request is refused before the app sees it (a declared body too large, CSRF), if it is."""
        if declared is not None:
            if not declared.isdigit():
                return 400, "Invalid Content-Length."
            if int(declared) > self._max_bytes(scope):
                return 413, "Request body too large."
        if scope["method"] in UNSAFE_METHODS and scope["path"].startswith(self.api_prefix):
            return self._csrf_refusal(scope)
        return None

    def _record(self, scope: Scope, status: int, elapsed: float) -> None:
        route = scope.get("route")
        template = getattr(route, "path", None) or "<unmatched>"
        method = scope["method"]
        self.metrics.observe_request(method, template, status, elapsed)
        path = scope["path"]
        level = logging.DEBUG if path.startswith(QUIET_PATHS) and status < 500 else logging.INFO
        if not log.isEnabledFor(level):  # probes at INFO: skip building the record
            return
        log.log(
            level,
            "request",
            extra={
                "method": method,
                "path": path,  # never the query string: it may carry tokens
                "route": template,
                "status": status,
                "duration_ms": round(elapsed * 1000, 2),
            },
        )

    def _csrf_refusal(self, scope: Scope) -> tuple[int, str] | None:
        headers = Headers(scope=scope)
        if not self._same_or_allowed_site(headers):
            return 403, "Cross-site request refused."
        if scope["path"] in self.multipart_paths:
            return None  # the route checks for multipart itself, after the session (401 first)
        if _has_body(headers) and not _is_json(headers.get("content-type")):
            return 415, "Request body must be application/json."
        return None

    def _same_or_allowed_site(self, headers: Headers) -> bool:
        origin = headers.get("origin")
        if origin is not None:
            if origin in self.allowed_origins:
                return True
            # Same origin: the page was served by us (compare host:port; TLS may end at a proxy).
            return origin != "null" and urlsplit(origin).netloc == headers.get("host")
        # No Origin: only a browser's own say-so can mark it cross-site.
        return headers.get("sec-fetch-site") not in {"cross-site", "same-site"}


def _limited(receive: Receive, max_bytes: int) -> Receive:
    received = 0

    async def receive_limited() -> Message:
        nonlocal received
        message = await receive()
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > max_bytes:
                raise RequestBodyTooLarge()
        return message

    return receive_limited


async def _head_as_get(app: ASGIApp, scope: Scope, receive: Receive, send: Send) -> None:
    as_get = {**scope, "method": "GET"}

    async def send_headers_only(message: Message) -> None:
        if message["type"] == "http.response.body":
            if message.get("more_body", False):
                return
            message = {"type": "http.response.body", "body": b"", "more_body": False}
        await send(message)

    try:
        await app(as_get, receive, send_headers_only)
    finally:
        if "route" in as_get:  # for the request log and metrics, which read the outer scope
            scope["route"] = as_get["route"]


def _has_body(headers: Headers) -> bool:
    length = headers.get("content-length")
    return (length is not None and length != "0") or "transfer-encoding" in headers


def _is_json(content_type: str | None) -> bool:
    if not content_type:
        return False
    mime = MimeMessage()
    mime["content-type"] = content_type
    subtype = mime.get_content_subtype()
    return mime.get_content_maintype() == "application" and (subtype == "json" or subtype.endswith("+json"))


async def _json_error(status: int, detail: str, scope: Scope, receive: Receive, send: Send) -> None:
    await JSONResponse({"detail": detail}, status_code=status)(scope, receive, send)
