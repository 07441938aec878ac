"""Chat fixtures: apps with changed settings, a real uvicorn server for the app, SSE parsing, DB reads."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

import asyncpg
import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from admin_api.main import create_app
from tests.service.conftest import client_for
from tests.support.sse import Event, parse_sse  # noqa: F401  (used by the tests importing from here)

SEND = "/api/v1/chat/send"


def answer_of(events: list[Event]) -> str:
    return "".join(event.data["content"] for event in events if event.name == "delta")


@dataclass(frozen=True)
class StoredMessage:
    msg_idt_id: str
    role: str
    content: str
    status: str


async def stored_messages(db: asyncpg.Pool, cnvs_idt_id: str) -> list[StoredMessage]:
    rows = await db.fetch(
        'SELECT "MSG_IDT_ID", "ROLE_CD", "MSG_CN", "STTS_CD" FROM "CNVS_MSG" '
        'WHERE "CNVS_IDT_ID" = $1 ORDER BY "MSG_ID"',
        cnvs_idt_id,
    )
    return [StoredMessage(*row) for row in rows]


def closed_port() -> int:
    """A loopback port nothing listens on (connection refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def chat_client(make_settings, make_user, login) -> Callable[..., contextlib.AbstractAsyncContextManager]:
    """`async with chat_client(llm_timeout_seconds=0.5) as http:` a logged-in client of an app with those settings."""

    @asynccontextmanager
    async def open_client(**overrides) -> AsyncIterator[httpx.AsyncClient]:
        app = create_app(make_settings(**overrides))
        async with app.router.lifespan_context(app):
            user = await make_user()
            async with client_for(app) as http:
                await login(http, user.username, user.password)
                http.user = user
                http.app = app
                yield http

    return open_client


class _QuietServer(uvicorn.Server):
    """uvicorn inside the test's event loop; pytest keeps its own signal handlers."""

    @contextlib.contextmanager
    def capture_signals(self):
        yield


@asynccontextmanager
async def serve_over_tcp(app: FastAPI) -> AsyncIterator[str]:
    """Run the app under a real uvicorn on 127.0.0.1 (its lifespan included); yields the base URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = _QuietServer(uvicorn.Config(app, lifespan="on", log_level="warning", timeout_graceful_shutdown=5))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.01)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
        sock.close()
