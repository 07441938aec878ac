"""Errors as JSON `{"detail": ...}`, never a stack trace or an internal exception's text."""

from __future__ import annotations

from typing import Any

import asyncpg
import redis.exceptions
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel

# Failures of a backing service rather than of our code: the client may retry, so 503 rather than 500.
UNAVAILABLE_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.PostgresConnectionError,  # class 08: connection lost, refused, does not exist
    asyncpg.exceptions.OperatorInterventionError,  # 57P0x: admin shutdown, crash, cannot connect now
    asyncpg.exceptions.TooManyConnectionsError,
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    OSError,  # connection refused / reset while (re)connecting
    TimeoutError,  # pool acquire or command timeout
)

UNAVAILABLE_DETAIL = "A backing service is temporarily unavailable; retry shortly."
INTERNAL_DETAIL = "Internal server error."


class NotFound(Exception):
    """Raised by the services for something the caller may not see; answered 404 with `detail`."""

    detail = "Not found."


class ErrorDetail(BaseModel):
    """The body of every error but 422: `{"detail": "what went wrong"}`."""

    detail: str


def _documented(*codes_and_descriptions: tuple[int, str]) -> dict[int | str, dict[str, Any]]:
    return {code: {"model": ErrorDetail, "description": text} for code, text in codes_and_descriptions}


# For the OpenAPI schema: the errors the middleware and the session dependency answer before a route runs
# (core.middleware, auth.dependencies), so that clients and schema checkers see every status they can get.
SESSION_ERRORS = _documented((401, "No session, or it expired; log in again."))
JSON_WRITE_ERRORS = _documented(
    (400, "The body is not parseable JSON, or Content-Length is invalid."),
    (403, "Cross-site request refused."),
    (413, "Request body too large."),
    (415, "Request body must be application/json."),
)


# When the connection breaks while it is in use (PostgreSQL stopped or restarted), asyncpg often reports it
# not as a connection error but as a client-side error raised while cleaning up, in `Transaction.__aexit__`
# ("the underlying connection is closed", an InterfaceError chained to the connection error) or in the pool's
# reset on release (InternalClientError "cannot switch to state ...; another operation is in progress": the
# protocol state of a connection the server cut). InterfaceError alone is also how asyncpg reports a misuse
# (a bug of ours), so only its closed-connection forms count; InternalClientError is never our doing.
_CLOSED_CONNECTION_TEXT = ("connection is closed", "connection was closed")


def is_unavailable(exc: BaseException) -> bool:
    if isinstance(exc, BaseExceptionGroup):
        return all(is_unavailable(inner) for inner in exc.exceptions)
    if isinstance(exc, (*UNAVAILABLE_ERRORS, asyncpg.exceptions.InternalClientError)):
        return True
    if isinstance(exc, asyncpg.exceptions.InterfaceError):
        if any(text in str(exc) for text in _CLOSED_CONNECTION_TEXT):
            return True
        cause = exc.__cause__ or exc.__context__
        return cause is not None and cause is not exc and is_unavailable(cause)
    return False


def unavailable_response() -> JSONResponse:
    return JSONResponse({"detail": UNAVAILABLE_DETAIL}, status_code=503, headers={"Retry-After": "5"})


def internal_error_response() -> JSONResponse:
    return JSONResponse({"detail": INTERNAL_DETAIL}, status_code=500)


async def not_found_handler(request: Request, exc: NotFound) -> JSONResponse:
    return JSONResponse({"detail": exc.detail}, status_code=404)


async def validation_error_handler(request: Request, exc: RequestValidationError) -> JSONResponse:
    """422 saying where and what, without echoing the input (it may be a password)."""
    errors = [
        {"loc": list(error.get("loc", ())), "msg": error.get("msg", "invalid"), "type": error.get("type", "invalid")}
        for error in exc.errors()
    ]
    return JSONResponse({"detail": errors}, status_code=422)


def install_exception_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, validation_error_handler)
    app.add_exception_handler(NotFound, not_found_handler)
    # Everything else that escapes the routes (unavailable backends, bugs) is answered by
    # core.middleware.RequestMiddleware (with the security headers).
