"""Small helpers shared by the security tests."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import httpx

from admin_api.auth.dependencies import SESSION_COOKIE

SEND = "/api/v1/chat/send"
HISTORY_LIST = "/api/v1/history/list"
HISTORY_DETAIL = "/api/v1/history/detail"
HISTORY_RENAME = "/api/v1/history/rename"
HISTORY_DELETE = "/api/v1/history/delete"


@dataclass(frozen=True)
class Event:
    name: str
    data: dict[str, Any]


def parse_sse(text: str) -> list[Event]:
    """Strict SSE parsing as a browser's EventSource does it: blocks split by a blank line, one `event:` and
    one `data:` field each. Every block must be one of ours (no stray fields)."""
    events = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        lines = [line for line in block.split("\n") if line and not line.startswith(":")]
        if not lines:
            continue
        fields = [line.split(": ", 1) for line in lines]
        assert [name for name, _ in fields] == ["event", "data"], block
        events.append(Event(fields[0][1], json.loads(fields[1][1])))
    return events


def post_raw_json(http: httpx.AsyncClient, path: str, body: Any, **kwargs) -> Any:
    """POST a body serialized by us (so lone surrogates, NULs and the like go over the wire as JSON escapes)."""
    return http.post(path, content=json.dumps(body), headers={"Content-Type": "application/json"}, **kwargs)


def use_session_cookie(http: httpx.AsyncClient, value: str) -> None:
    """Send exactly this session cookie (httpx files host-only cookies under 'testserver.local')."""
    http.cookies.clear()
    http.cookies.set(SESSION_COOKIE, value, domain="testserver.local")
