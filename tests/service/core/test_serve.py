"""`admin-api serve` as the real process a pod runs: uvicorn, JSON logs, and SIGTERM.

On SIGTERM the app hears of it before uvicorn's graceful wait, not after it: readiness answers 503,
open chat streams end with their error event and requests still waiting for the LLM get a 503, so the
pod empties in well under the graceful timeout (cli.GRACEFUL_SHUTDOWN_SECONDS, 20 s here).
"""

from __future__ import annotations

import asyncio
import signal
import time

import httpx
import pytest
import redis.asyncio
from admin_api.cli import GRACEFUL_SHUTDOWN_SECONDS
from admin_api.main import POOL_CLOSE_TIMEOUT_SECONDS

from tests.service.chat.conftest import SEND, answer_of, parse_sse, stored_messages
from tests.support.serve import serving_async

RESTARTING = "The server is restarting. Please retry."


@pytest.fixture
def serve(tmp_path, database_url, redis_url, openai_server):
    """`async with serve(**env) as server:` a running `admin-api serve` on a free loopback port."""

    def start(**env: str):
        base = {"DATABASE_URL": database_url, "REDIS_URL": redis_url, "LLM_ENDPOINT": openai_server.url,
                "LLM_MODEL": "test-model"}
        return serving_async({**base, **env}, tmp_path)

    return start


async def test_serve_runs_uvicorn_with_json_logs_and_stops_on_sigterm(serve):
    async with serve() as server, httpx.AsyncClient(base_url=server.base_url) as http:
        response = await http.get("/health/ready", headers={"X-Request-ID": "serve-test"})
        assert response.status_code == 200
        assert response.headers["server"] == "uvicorn"
        assert (await http.get("/api/v1/auth/me", headers={"X-Request-ID": "serve-test"})).status_code == 401
        server.terminate()
        returncode = await server.wait(timeout=30)

    # uvicorn re-raises the signal once it has shut down gracefully.
    assert returncode in (0, -signal.SIGTERM), server.stderr.read_text()
    lines = server.log_lines()
    assert any(line.get("request_id") == "serve-test" and line.get("status") == 401 for line in lines)
    assert any(line["message"] == "admin-api stopped" for line in lines)  # the lifespan closed its resources
    assert server.stderr.read_text() == ""  # nothing but JSON lines, all on stdout


async def test_sigterm_ends_open_streams_and_llm_waits_at_once(serve, make_user, openai_server, db):
    user = await make_user()
    openai_server.queue(answer="one two three four", hold_after=2)  # an open stream, held mid-answer
    openai_server.queue(hold=True)  # a streamed send the LLM has not begun to answer

    async with serve(COOKIE_SECURE="false") as server, httpx.AsyncClient(base_url=server.base_url, timeout=30) as http:
        login = await http.post("/api/v1/auth/login", json={"username": user.username, "password": user.password})
        assert login.status_code == 200
        received = ""
        async with http.stream("POST", SEND, json={"message": "held midway", "stream": True}) as open_stream:
            pieces = open_stream.aiter_text()
            while received.count("event: delta") < 2:
                received += await anext(pieces)
            waiting = asyncio.create_task(http.post(SEND, json={"message": "not answered yet", "stream": True}))
            await openai_server.wait_for_requests(2)

            signalled = server.terminate()
            async with asyncio.timeout(10):  # the graceful wait would be 20 s
                async for text in pieces:
                    received += text
                unanswered = await waiting
            ended_after = time.monotonic() - signalled
        returncode = await server.wait(timeout=15)

    assert ended_after < 5, ended_after
    assert returncode in (0, -signal.SIGTERM), server.stderr.read_text()
    events = parse_sse(received)
    assert [event.name for event in events] == ["start", "delta", "delta", "error"]
    assert events[-1].data == {"detail": RESTARTING, "status": 503}
    assert unanswered.status_code == 503
    assert unanswered.json()["detail"] == RESTARTING
    assert unanswered.headers["retry-after"] == "5"

    # Both LLM requests were closed, and both turns stored as failed, what was said so far included.
    assert all(request.disconnected and not request.completed for request in openai_server.chat_requests)
    opened = await stored_messages(db, events[0].data["cnvs_idt_id"])
    assert [(m.role, m.content, m.status) for m in opened] == [
        ("user", "held midway", "failed"),
        ("assistant", answer_of(events), "failed"),
    ]
    assert answer_of(events) == "one two "
    unanswered_turn = await stored_messages(db, unanswered.json()["cnvs_idt_id"])
    assert [(m.role, m.status) for m in unanswered_turn] == [("user", "failed")]
    messages = [line["message"] for line in server.log_lines()]
    assert messages.index("admin-api shutting down: readiness 503, ending open streams") < messages.index(
        "admin-api stopped"
    )


async def test_sigterm_turns_readiness_503_before_the_graceful_wait(serve, private_redis):
    # A Redis of this test's own: it is paused below, which must not stall anyone else's tests.
    redis_server = private_redis()
    async with serve(REDIS_URL=redis_server.url()) as server, httpx.AsyncClient(base_url=server.base_url) as http:
        assert (await http.get("/health/ready")).status_code == 200
        # Hold a readiness probe in flight: Redis answers nothing for 1.5 s (and then again, well within
        # the probe's 2 s check timeout). PostgreSQL and Redis stay up all along.
        pauser = redis.asyncio.Redis.from_url(redis_server.url())
        await pauser.execute_command("CLIENT", "PAUSE", 1500, "ALL")
        await pauser.aclose()
        probe = asyncio.create_task(http.get("/health/ready"))
        await asyncio.sleep(0.5)  # the probe reaches the server and waits on Redis

        server.terminate()
        response = await probe
        await server.wait(timeout=30)

    assert response.status_code == 503, response.text
    body = response.json()
    assert body["checks"] == {"database": "ok", "application": "failed", "redis": "ok"}
    assert body["error"] == "Application shutting down"


def test_the_shutdown_fits_in_the_pods_termination_grace_period():
    from adminapi_operator.builders import pod_template
    from adminapi_operator.spec import AdminApiSpec

    pod = pod_template("chat", AdminApiSpec.parse({"image": "admin-api:1", "replicas": 1}, "chat"))
    grace = pod["spec"]["terminationGracePeriodSeconds"]
    # uvicorn's graceful wait, then the lifespan closing the pool, with room for the rest (clients, ticks).
    assert GRACEFUL_SHUTDOWN_SECONDS + POOL_CLOSE_TIMEOUT_SECONDS + 2 <= grace
