"""A new conversation's first message is stored while the LLM is asked: either may finish first, and the turn
ends as it would have, had the message been stored before the LLM was asked."""

from __future__ import annotations

import asyncio

import pytest

from admin_api.chat import repository
from admin_api.core.errors import UNAVAILABLE_DETAIL
from tests.service.chat.conftest import SEND, parse_sse, stored_messages


def store_after(monkeypatch, event: asyncio.Event, *, fail: bool = False) -> None:
    """Hold the new conversation's statement until `event` is set; then run it, or fail as PostgreSQL down."""
    real = repository.start_new_conversation

    async def held(*args, **kwargs):
        await event.wait()
        if fail:
            raise ConnectionRefusedError("PostgreSQL is down")
        return await real(*args, **kwargs)

    monkeypatch.setattr(repository, "start_new_conversation", held)


async def conversations_of(db, user_id: int) -> int:
    return await db.fetchval('SELECT count(*) FROM "USR_CNVS_SMRY" WHERE "USR_ID" = $1', user_id)


@pytest.mark.parametrize("llm_answered", [False, True])
@pytest.mark.parametrize("stream", [False, True])
async def test_storing_failing_while_the_llm_is_asked_is_503_and_closes_the_llm_request(
    stream, llm_answered, monkeypatch, user_client, openai_server, db
):
    openai_server.script(hold=not llm_answered, answer="never shown")
    stored = asyncio.Event()
    store_after(monkeypatch, stored, fail=True)
    sending = asyncio.create_task(user_client.post(SEND, json={"message": "hello?", "stream": stream}))
    (asked,) = await openai_server.wait_for_requests(1)
    if llm_answered:  # its answer, or the stream's first bytes, already sent
        await openai_server.wait_until(lambda: asked.completed)

    stored.set()
    response = await asyncio.wait_for(sending, timeout=5)

    assert response.status_code == 503, response.text
    assert response.json() == {"detail": UNAVAILABLE_DETAIL}
    assert await conversations_of(db, user_client.user.id) == 0
    if not llm_answered:  # left waiting: the request is closed, so the LLM stops generating
        await openai_server.wait_until(lambda: asked.disconnected)


@pytest.mark.parametrize("stream", [False, True])
async def test_the_llm_failing_before_the_message_is_stored_still_keeps_the_message(
    stream, monkeypatch, user_client, openai_server, db
):
    openai_server.script(status=500)
    stored = asyncio.Event()
    store_after(monkeypatch, stored)
    sending = asyncio.create_task(user_client.post(SEND, json={"message": "fail first", "stream": stream}))
    (asked,) = await openai_server.wait_for_requests(1)
    await openai_server.wait_until(lambda: asked.completed)  # the LLM's error went out before the message is stored

    stored.set()
    response = await asyncio.wait_for(sending, timeout=5)

    assert response.status_code == 502, response.text
    body = response.json()
    messages = await stored_messages(db, body["cnvs_idt_id"])
    assert [(m.msg_idt_id, m.role, m.content, m.status) for m in messages] == [
        (body["user_message_id"], "user", "fail first", "failed")
    ]


async def test_a_stream_answered_before_the_message_is_stored_is_whole_and_stored(
    monkeypatch, user_client, openai_server, db
):
    openai_server.script(answer="one two three")
    stored = asyncio.Event()
    store_after(monkeypatch, stored)
    sending = asyncio.create_task(user_client.post(SEND, json={"message": "quick", "stream": True}))
    (asked,) = await openai_server.wait_for_requests(1)
    await openai_server.wait_until(lambda: asked.completed)

    stored.set()
    response = await asyncio.wait_for(sending, timeout=5)

    assert response.status_code == 200, response.text
    events = parse_sse(response.text)
    assert [e.name for e in events] == ["start", "delta", "delta", "delta", "end"]
    start = events[0].data
    messages = await stored_messages(db, start["cnvs_idt_id"])
    assert [(m.role, m.content, m.status) for m in messages] == [
        ("user", "quick", "complete"), ("assistant", "one two three", "complete")
    ]
