"""Small helpers shared by the security tests."""

from __future__ import annotations

import json
from typing import Any

import httpx

from admin_api.auth.dependencies import SESSION_COOKIE
from tests.support.sse import Event, parse_sse  # noqa: F401  (used by the tests importing from here)

SEND = "/api/v1/chat/send"
HISTORY_LIST = "/api/v1/history/list"
HISTORY_DETAIL = "/api/v1/history/detail"
HISTORY_RENAME = "/api/v1/history/rename"
HISTORY_DELETE = "/api/v1/history/delete"


def post_raw_json(http: httpx.AsyncClient, path: str, body: Any, **kwargs) -> Any:
    """POST a body serialized by us (so lone surrogates, NULs and the like go over the wire as JSON escapes)."""
    return http.post(path, content=json.dumps(body), headers={"Content-Type": "application/json"}, **kwargs)


def use_session_cookie(http: httpx.AsyncClient, value: str) -> None:
    """Send exactly this session cookie (httpx files host-only cookies under 'testserver.local')."""
    http.cookies.clear()
    http.cookies.set(SESSION_COOKIE, value, domain="testserver.local")
