"""OWASP API4:2023 Unrestricted Resource Consumption: body size, message length, page size, deep paging,
password length (argon2 cost), login attempts, LLM context size."""

from __future__ import annotations

import asyncio

import pytest

from admin_api.chat.service import CONTEXT_MESSAGES
from tests.security.helpers import HISTORY_LIST, SEND
from tests.service.chat.conftest import chat_client  # noqa: F401  (fixture)
from tests.service.conftest import client_for


async def test_oversized_bodies_are_413_before_auth_or_parsing(client, user_client, settings):
    big = b'{"message": "' + b"a" * settings.max_body_bytes + b'"}'
    for http in (client, user_client):
        for path in (SEND, HISTORY_LIST, "/api/v1/auth/login"):
            response = await http.post(path, content=big, headers={"Content-Type": "application/json"})
            assert response.status_code == 413, (path, response.text)
            assert response.json() == {"detail": "Request body too large."}


async def test_chunked_oversized_body_is_413(user_client, settings):
    async def chunks():
        yield b'{"message": "'
        for _ in range(settings.max_body_bytes // 65536 + 2):
            yield b"a" * 65536
        yield b'"}'

    response = await user_client.post(SEND, content=chunks(), headers={"Content-Type": "application/json"})
    assert response.status_code == 413


async def test_a_lying_content_length_is_refused(user_client):
    response = await user_client.post(
        SEND, content=b'{"message": "hi"}', headers={"Content-Type": "application/json", "Content-Length": "-1"}
    )
    assert response.status_code == 400


async def test_message_length_is_bounded(user_client, settings, openai_server):
    too_long = "a" * (settings.max_message_chars + 1)
    response = await user_client.post(SEND, json={"message": too_long})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "message"]
    assert openai_server.chat_requests == []
    ok = await user_client.post(SEND, json={"message": "a" * settings.max_message_chars})
    assert ok.status_code == 200


@pytest.mark.parametrize(
    "body",
    [{"page_size": 101}, {"page_size": 0}, {"page_size": 10**9}, {"page": 0}, {"page": 10**7}, {"page": -1},
     {"page_size": "100"}, {"page_size": 1.5}, {"cursor": "x" * 257}],
)
async def test_page_size_and_depth_are_bounded(user_client, body):
    response = await user_client.post(HISTORY_LIST, json=body)
    assert response.status_code == 422, (body, response.text)


async def test_max_page_size_is_honoured(user_client, seed_conversation):
    for i in range(105):
        await seed_conversation(user_client.user.id, title=f"c{i}")
    page = (await user_client.post(HISTORY_LIST, json={"page_size": 100})).json()
    assert len(page["items"]) == 100 and page["total"] == 105 and page["next_cursor"]


async def test_password_length_is_bounded_before_hashing(client):
    response = await client.post("/api/v1/auth/login", json={"username": "u", "password": "p" * 1025})
    assert response.status_code == 422
    response = await client.post("/api/v1/auth/login", json={"username": "u" * 65, "password": "p"})
    assert response.status_code == 422


async def test_login_attempts_are_limited(client, make_user, settings):
    user = await make_user()
    codes = [
        (await client.post("/api/v1/auth/login", json={"username": user.username, "password": "x"})).status_code
        for _ in range(settings.login_max_failures + 1)
    ]
    assert codes[-1] == 429 and codes.count(401) == settings.login_max_failures


async def test_the_llm_context_is_bounded(user_client, seed_conversation, openai_server):
    """A long conversation does not grow the prompt (and the LLM bill) without bound."""
    history = [("user" if i % 2 == 0 else "assistant", f"turn {i}") for i in range(3 * CONTEXT_MESSAGES)]
    cnvs = await seed_conversation(user_client.user.id, messages=history)
    response = await user_client.post(SEND, json={"cnvs_idt_id": cnvs, "message": "and now?"})
    assert response.status_code == 200
    assert len(openai_server.chat_requests[-1].messages) == CONTEXT_MESSAGES + 1


async def test_temperature_is_bounded(user_client, openai_server):
    for bad in (-0.1, 2.01, 1e308, "hot", True, False, "1"):  # FINDING (fixed): `true` passed as 1.0
        assert (await user_client.post(SEND, json={"message": "hi", "temperature": bad})).status_code == 422
    raw = b'{"message": "hi", "temperature": NaN}'
    response = await user_client.post(SEND, content=raw, headers={"Content-Type": "application/json"})
    assert response.status_code == 422
    raw = b'{"message": "hi", "temperature": Infinity}'
    response = await user_client.post(SEND, content=raw, headers={"Content-Type": "application/json"})
    assert response.status_code == 422
    assert openai_server.chat_requests == []


async def test_temperature_takes_json_numbers_ints_included(user_client, openai_server):
    for good in (0, 1, 1.5):
        assert (await user_client.post(SEND, json={"message": "hi", "temperature": good})).status_code == 200
    assert [r.temperature for r in openai_server.chat_requests] == [0, 1, 1.5]


async def test_chat_sends_are_rate_limited_per_user_before_the_llm(chat_client, openai_server):
    """FINDING (fixed): 100 sends in 5 s were 100 LLM calls, no 429."""
    async with chat_client(chat_rate_limit=3, chat_rate_window_seconds=3600) as http:
        statuses = [(await http.post(SEND, json={"message": f"m{i}"})).status_code for i in range(3)]
        refused = await http.post(SEND, json={"message": "one too many", "stream": True})
        metrics = (await http.get("/metrics")).text
    assert statuses == [200] * 3
    assert refused.status_code == 429 and refused.json()["detail"]
    assert 0 < int(refused.headers["Retry-After"]) <= 3600
    assert len(openai_server.chat_requests) == 3  # the refused send never reached the LLM
    assert 'chat_send_limited_total{reason="rate"} 1.0' in metrics


async def test_the_rate_is_per_user_and_replays_do_not_count(chat_client, openai_server):
    async with chat_client(chat_rate_limit=2, chat_rate_window_seconds=3600) as http:
        key = {"Idempotency-Key": "replayed-send-1"}
        first = await http.post(SEND, json={"message": "once"}, headers=key)
        replays = [await http.post(SEND, json={"message": "once"}, headers=key) for _ in range(5)]
        second = await http.post(SEND, json={"message": "twice"})
    assert first.status_code == second.status_code == 200
    assert [(r.status_code, r.headers.get("Idempotent-Replayed")) for r in replays] == [(200, "true")] * 5
    assert len(openai_server.chat_requests) == 2


async def test_concurrent_sends_per_user_are_bounded(chat_client, openai_server, make_user, login):
    openai_server.script(hold=True)
    async with chat_client(chat_max_concurrent=1) as http:
        waiting = asyncio.create_task(http.post(SEND, json={"message": "first"}))
        await openai_server.wait_for_requests(1, timeout=30)
        busy = await http.post(SEND, json={"message": "second", "stream": True})
        async with client_for(http.app) as other:  # another user is not held back
            someone = await make_user()
            await login(other, someone.username, someone.password)
            other_send = asyncio.create_task(other.post(SEND, json={"message": "other user"}))
            await openai_server.wait_for_requests(2, timeout=30)
            openai_server.release()
            assert (await other_send).status_code == 200
        assert (await waiting).status_code == 200
        # The slot is free again once the answer is stored; a stream holds it until it closes.
        assert (await http.post(SEND, json={"message": "second", "stream": True})).status_code == 200
        assert (await http.post(SEND, json={"message": "third"})).status_code == 200
        metrics = (await http.get("/metrics")).text
    assert busy.status_code == 429 and busy.headers["Retry-After"] == "1"
    assert 'chat_send_limited_total{reason="concurrency"} 1.0' in metrics
    assert len(openai_server.chat_requests) == 4
