"""Idempotency-Key: a retried send returns the first result without asking the LLM again."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from redis.asyncio import Redis

from admin_api.chat.idempotency import IDEMPOTENCY_TTL_SECONDS
from tests.service.chat.conftest import SEND, answer_of, parse_sse, stored_messages
from tests.service.conftest import ALLOWED_ORIGIN


def key_header() -> dict[str, str]:
    return {"Idempotency-Key": str(uuid.uuid4())}


async def test_a_retried_send_replays_the_first_answer_without_calling_the_llm(user_client, openai_server, db):
    headers = key_header()
    body = {"cnvs_idt_id": "", "message": "only once", "temperature": 0.2}

    first = await user_client.post(SEND, json=body, headers=headers)
    retried = await user_client.post(SEND, json=body, headers=headers)

    assert first.status_code == retried.status_code == 200
    assert retried.json() == first.json()
    assert retried.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers
    assert len(openai_server.chat_requests) == 1
    assert len(await stored_messages(db, first.json()["cnvs_idt_id"])) == 2  # no second user message


async def test_a_retried_stream_replays_the_stored_result_as_events(user_client, openai_server):
    headers = key_header()
    body = {"message": "stream once", "stream": True}

    first = parse_sse((await user_client.post(SEND, json=body, headers=headers)).text)
    response = await user_client.post(SEND, json=body, headers=headers)
    retried = parse_sse(response.text)

    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["idempotent-replayed"] == "true"
    assert [event.name for event in retried] == ["start", "delta", "end"]
    assert retried[0].data == first[0].data
    assert answer_of(retried) == answer_of(first)
    assert retried[-1].data == first[-1].data
    assert len(openai_server.chat_requests) == 1


async def test_the_same_key_with_a_different_body_is_refused(user_client, openai_server):
    headers = key_header()
    await user_client.post(SEND, json={"message": "first body"}, headers=headers)

    response = await user_client.post(SEND, json={"message": "another body"}, headers=headers)

    assert response.status_code == 422
    (error,) = response.json()["detail"]
    assert error["loc"] == ["header", "Idempotency-Key"] and "different request body" in error["msg"]
    assert len(openai_server.chat_requests) == 1


async def test_a_concurrent_duplicate_is_409_and_the_llm_is_asked_once(user_client, openai_server):
    headers = key_header()
    body = {"message": "in flight"}
    openai_server.script(hold=True)
    first = asyncio.create_task(user_client.post(SEND, json=body, headers=headers))
    await openai_server.wait_for_requests(1)

    duplicate = await user_client.post(SEND, json=body, headers=headers)
    openai_server.release()
    completed = await first

    assert duplicate.status_code == 409
    assert "still in progress" in duplicate.json()["detail"]
    assert completed.status_code == 200
    assert (await user_client.post(SEND, json=body, headers=headers)).json() == completed.json()
    assert len(openai_server.chat_requests) == 1


@pytest.mark.parametrize("stream", [False, True])
async def test_a_failed_send_frees_the_key_so_the_retry_really_runs(stream, user_client, openai_server):
    headers = key_header()
    body = {"message": "retry me", "stream": stream}
    openai_server.queue(status=500)

    failed = await user_client.post(SEND, json=body, headers=headers)
    retried = await user_client.post(SEND, json=body, headers=headers)

    assert failed.status_code == 502
    assert retried.status_code == 200 and "idempotent-replayed" not in retried.headers
    assert len(openai_server.chat_requests) == 2


async def test_a_stream_broken_midway_frees_the_key(user_client, openai_server):
    headers = key_header()
    body = {"message": "retry me", "stream": True}
    openai_server.queue(break_after=1)

    first = parse_sse((await user_client.post(SEND, json=body, headers=headers)).text)
    retried = parse_sse((await user_client.post(SEND, json=body, headers=headers)).text)

    assert first[-1].name == "error" and retried[-1].name == "end"
    assert len(openai_server.chat_requests) == 2


async def test_keys_belong_to_one_user(user_client, other_user_client, openai_server):
    headers = key_header()
    mine = await user_client.post(SEND, json={"message": "same"}, headers=headers)
    theirs = await other_user_client.post(SEND, json={"message": "same"}, headers=headers)

    assert theirs.status_code == 200
    assert theirs.json()["cnvs_idt_id"] != mine.json()["cnvs_idt_id"]
    assert len(openai_server.chat_requests) == 2


async def test_results_are_kept_at_least_a_day(user_client, settings):
    await user_client.post(SEND, json={"message": "keep me"}, headers=key_header())

    redis = Redis.from_url(settings.redis_url, decode_responses=True)
    try:
        keys = [key async for key in redis.scan_iter(f"idempotency:chat-send:{user_client.user.id}:*")]
        assert len(keys) == 1
        assert await redis.ttl(keys[0]) > IDEMPOTENCY_TTL_SECONDS - 60
        assert IDEMPOTENCY_TTL_SECONDS >= 24 * 3600
    finally:
        await redis.aclose()


@pytest.mark.parametrize("key", ["", "x" * 256, "has space", "caf\u00e9".encode()])
async def test_malformed_keys_are_422(key, user_client, openai_server):
    response = await user_client.post(SEND, json={"message": "hi"}, headers={"Idempotency-Key": key})

    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["header", "Idempotency-Key"]
    assert openai_server.chat_requests == []


async def test_a_browser_frontend_may_read_the_replayed_header(user_client, openai_server):
    headers = {**key_header(), "Origin": ALLOWED_ORIGIN}
    await user_client.post(SEND, json={"message": "cross-origin"}, headers=headers)

    retried = await user_client.post(SEND, json={"message": "cross-origin"}, headers=headers)

    assert retried.headers["idempotent-replayed"] == "true"
    assert retried.headers["access-control-allow-origin"] == ALLOWED_ORIGIN
    exposed = {name.strip().lower() for name in retried.headers["access-control-expose-headers"].split(",")}
    assert "idempotent-replayed" in exposed
