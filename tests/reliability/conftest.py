"""Fixtures for the reliability suite: a real `admin-api serve` process on the PostgreSQL/Redis the test
chooses (private ones, which the test may stop and start, so the shared servers are never touched), many
logged-in httpx clients against it, and a recorder that checks every answer is a clear one.

A "clear answer" is a 2xx, or a JSON error with a `detail` and one of the statuses the test allows; a
stream must end with an `end` or an `error` event. A transport error or a timeout (the bound of the
test's clients) is not a clear answer: the test fails.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import httpx
import pytest
from admin_api.auth.repository import insert_user
from admin_api.auth.service import hash_password
from admin_api.migrations import upgrade

from tests.service.chat.conftest import SEND, Event, answer_of, parse_sse  # noqa: F401
from tests.support.serve import ServeProcess, serving_async
from tests.service.conftest import *  # noqa: F403  (database_url, db, make_user, ...)

PASSWORD = "reliability-password"
REQUEST_TIMEOUT = 20.0  # the bound on any single answer: beyond it the request "hung"


@pytest.fixture
def serve(tmp_path, database_url, redis_url, openai_server):
    """`async with serve(DATABASE_URL=..., ...) as server:` a running `admin-api serve` on a free port."""

    @asynccontextmanager
    async def start(**env: str) -> AsyncIterator[ServeProcess]:
        base = {"DATABASE_URL": database_url, "REDIS_URL": redis_url, "LLM_ENDPOINT": openai_server.url,
                "LLM_MODEL": "test-model", "COOKIE_SECURE": "false", "LOG_LEVEL": "WARNING",
                # Load, not abuse: the per-user chat limits (tested in tests/security) stay out of the way.
                "CHAT_RATE_LIMIT": "1000000"}
        async with serving_async({**base, **env}, tmp_path) as server:
            yield server
            assert server.process.poll() is None, "admin-api serve died during the test"

    return start


@pytest.fixture(scope="session")
def password_hash() -> str:
    return hash_password(PASSWORD)


@pytest.fixture
def private_database(private_postgres):
    """A PostgreSQL server of the test's own with a migrated admin_db: (server, DATABASE_URL)."""

    async def make():
        server = await asyncio.to_thread(private_postgres)
        await asyncio.to_thread(server.create_database, "admin_db")
        await asyncio.to_thread(upgrade, server.url("admin_db"))
        return server, server.url("admin_db")

    return make


async def create_users(dsn: str, count: int, password_hash: str) -> list[str]:
    conn = await asyncpg.connect(dsn.replace("+asyncpg", "", 1))
    try:
        names = [f"load-{os.urandom(6).hex()}" for _ in range(count)]
        for name in names:
            await insert_user(conn, username=name, password_hash=password_hash, is_admin=False)
        return names
    finally:
        await conn.close()


@asynccontextmanager
async def logged_in_clients(base_url: str, usernames: list[str]) -> AsyncIterator[list[httpx.AsyncClient]]:
    clients = [httpx.AsyncClient(base_url=base_url, timeout=REQUEST_TIMEOUT) for _ in usernames]
    try:
        logins = await asyncio.gather(*(_log_in(http, u) for http, u in zip(clients, usernames)))
        assert [r.status_code for r in logins] == [200] * len(clients), [r.text for r in logins if r.status_code != 200]
        yield clients
    finally:
        await asyncio.gather(*(http.aclose() for http in clients))


async def _log_in(http: httpx.AsyncClient, username: str) -> httpx.Response:
    """Log in as a well-behaved client does: many at once meet the bound on password hashing (503) and
    come back after Retry-After."""
    for _ in range(60):
        response = await http.post("/api/v1/auth/login", json={"username": username, "password": PASSWORD})
        if response.status_code not in (429, 503):
            return response
        await asyncio.sleep(float(response.headers.get("Retry-After", "1")))
    return response


@dataclass
class Outcome:
    """One request and what came of it."""

    kind: str  # "send", "stream", "list", "me", ...
    status: int | None = None
    body: Any = None  # parsed JSON, or the list of SSE events
    problem: str | None = None  # why this is not a clear answer (None: it is)

    @property
    def ok(self) -> bool:
        return self.problem is None and self.status is not None and 200 <= self.status < 300 and not self.stream_error

    @property
    def stream_error(self) -> dict | None:
        if self.kind == "stream" and isinstance(self.body, list) and self.body and self.body[-1].name == "error":
            return self.body[-1].data
        return None


@dataclass
class Recorder:
    """Makes requests, classifies every answer, and keeps them all for the test's invariants."""

    allowed_errors: frozenset[int]
    outcomes: list[Outcome] = field(default_factory=list)

    async def request(self, http: httpx.AsyncClient, kind: str, path: str, body: dict | None = None, **kw) -> Outcome:
        outcome = Outcome(kind)
        try:
            if kind == "stream":
                async with http.stream("POST", path, json=body, **kw) as response:
                    outcome.status = response.status_code
                    text = (await response.aread()).decode()
                    if response.status_code == 200:
                        outcome.body = parse_sse(text)
                    else:
                        outcome.body = _json_or_text(text)
                    self._check(outcome, response.headers.get("content-type", ""))
            else:
                method = "GET" if body is None else "POST"
                response = await http.request(method, path, json=body, **kw)
                outcome.status = response.status_code
                outcome.body = _json_or_text(response.text)
                self._check(outcome, response.headers.get("content-type", ""))
        except (httpx.TimeoutException, httpx.TransportError) as exc:
            outcome.problem = f"{type(exc).__name__}: no clear answer within {REQUEST_TIMEOUT}s"
        self.outcomes.append(outcome)
        return outcome

    def _check(self, outcome: Outcome, content_type: str) -> None:
        status = outcome.status
        if 200 <= status < 300:
            if outcome.kind == "stream":
                if not content_type.startswith("text/event-stream"):
                    outcome.problem = f"stream answered {content_type}"
                    return
                names = [event.name for event in outcome.body]
                if not names or names[0] != "start" or names[-1] not in ("end", "error"):
                    outcome.problem = f"stream did not end with end/error: {names}"
                elif names[-1] == "error" and outcome.body[-1].data.get("status") not in self.allowed_errors:
                    outcome.problem = f"stream error event with status {outcome.body[-1].data}"
            return
        if status not in self.allowed_errors:
            outcome.problem = f"status {status}: {str(outcome.body)[:300]}"
        elif not content_type.startswith("application/json") or not isinstance(outcome.body, dict):
            outcome.problem = f"status {status} not JSON: {content_type} {str(outcome.body)[:300]}"
        elif not isinstance(outcome.body.get("detail"), str) or not outcome.body["detail"]:
            outcome.problem = f"status {status} without a detail: {outcome.body}"

    def problems(self) -> list[str]:
        return [f"{o.kind}: {o.problem}" for o in self.outcomes if o.problem]

    def count(self, predicate: Callable[[Outcome], bool]) -> int:
        return sum(1 for o in self.outcomes if predicate(o))


def _json_or_text(text: str) -> Any:
    import json

    try:
        return json.loads(text)
    except ValueError:
        return text


async def wait_for(condition: Callable[[], Any], what: str, within: float = 30.0) -> None:
    """Poll `condition` (sync or async) until true; fail naming `what` after `within` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        value = condition()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return
        if loop.time() > deadline:
            raise AssertionError(f"{what}: not reached within {within}s")
        await asyncio.sleep(0.1)


async def ready_status(base_url: str) -> int:
    async with httpx.AsyncClient(base_url=base_url, timeout=REQUEST_TIMEOUT) as http:
        return (await http.get("/health/ready")).status_code


def metric_samples(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """Samples of one metric from a Prometheus text page, keyed by sorted labels."""
    from prometheus_client.parser import text_string_to_metric_families

    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                samples[tuple(sorted(sample.labels.items()))] = sample.value
    return samples
