"""JSON logs, one object per line, each carrying the id of the request it belongs to.

What is never logged: passwords, cookies, session ids, message text. The request log records the
method, the path, the status and the time taken, never headers or bodies.
"""

from __future__ import annotations

import logging
import sys
from contextvars import ContextVar

from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.orjson import OrjsonFormatter

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)


class RequestIdFilter(logging.Filter):
    """Stamps each record with the current request id (None outside a request)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get()
        return True


def json_formatter() -> logging.Formatter:
    # orjson: a third less time per line than the stdlib encoder (one line per API request).
    return OrjsonFormatter(
        "{levelname}{name}{message}{request_id}",
        style="{",
        rename_fields={"levelname": "level", "name": "logger"},
        timestamp=True,  # ISO 8601 in UTC
        reserved_attrs=[*RESERVED_ATTRS, "color_message"],  # uvicorn's terminal-coloured duplicate
    )


def json_handler(stream=None) -> logging.Handler:
    handler = logging.StreamHandler(stream or sys.stdout)
    handler.setFormatter(json_formatter())
    handler.addFilter(RequestIdFilter())
    return handler


def configure_logging(level: str = "INFO") -> None:
    """Route every logger (uvicorn's too) through one JSON handler on stdout."""
    # The logging HOWTO's "Optimization": our lines carry no caller, thread or process, so do not compute them
    # for every record (the request log writes one per request; the caller's frame walk alone was a tenth of it).
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    root.addHandler(json_handler())
    root.setLevel(level)
    logging.captureWarnings(True)  # Python warnings too, as JSON (logger "py.warnings"), not plain stderr text
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    # Client libraries log request details at DEBUG; keep them quiet even when we debug our code.
    for name in ("httpx", "httpcore", "openai", "asyncio"):
        logging.getLogger(name).setLevel(max(logging.INFO, logging.getLevelName(level)))
