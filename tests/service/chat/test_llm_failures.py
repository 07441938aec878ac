"""The LLM down (503), slow (504) or answering an error (502): a clear JSON error, the user's message kept.
Mid-stream failures become an `error` event; what was said so far is kept as a failed answer."""

from __future__ import annotations

import asyncio

import pytest

from tests.service.chat.conftest import SEND, answer_of, closed_port, parse_sse, stored_messages

UPSTREAM_SECRET = "upstream-internal-detail-7f3a"  # must never reach our client


def assert_clear_failure(response, status: int, fragment: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"detail", "cnvs_idt_id", "user_message_id"}
    assert fragment in body["detail"]
    assert UPSTREAM_SECRET not in response.text and "Traceback" not in response.text
    return body


async def assert_user_message_kept(db, body: dict, text: str) -> None:
    messages = await stored_messages(db, body["cnvs_idt_id"])
    assert [(m.msg_idt_id, m.role, m.content, m.status) for m in messages] == [
        (body["user_message_id"], "user", text, "failed")
    ]


@pytest.mark.parametrize("stream", [False, True])
async def test_llm_down_is_503_and_the_message_is_kept(stream, chat_client, db):
    async with chat_client(llm_endpoint=f"http://127.0.0.1:{closed_port()}/v1") as http:
        response = await http.post(SEND, json={"message": "anyone there?", "stream": stream})

    body = assert_clear_failure(response, 503, "unavailable")
    assert response.headers["retry-after"] == "5"
    await assert_user_message_kept(db, body, "anyone there?")


@pytest.mark.parametrize("stream", [False, True])
async def test_llm_too_slow_is_504_and_the_upstream_request_is_abandoned(stream, chat_client, openai_server, db):
    openai_server.script(first_byte_delay=5)
    async with chat_client(llm_timeout_seconds=0.3) as http:
        response = await http.post(SEND, json={"message": "take your time", "stream": stream})

    body = assert_clear_failure(response, 504, "did not answer in time")
    await assert_user_message_kept(db, body, "take your time")
    await openai_server.wait_until(lambda: openai_server.chat_requests[0].disconnected)


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("upstream_status", [400, 429, 500, 503])
async def test_llm_error_status_is_502(upstream_status, stream, user_client, openai_server, db):
    openai_server.script(status=upstream_status, error_message=UPSTREAM_SECRET)

    response = await user_client.post(SEND, json={"message": "please fail", "stream": stream})

    body = assert_clear_failure(response, 502, "answered with an error")
    await assert_user_message_kept(db, body, "please fail")


async def test_failure_in_an_existing_conversation_keeps_its_id_for_the_retry(user_client, openai_server, db):
    first = (await user_client.post(SEND, json={"message": "one"})).json()
    openai_server.queue(status=500)

    failed = await user_client.post(SEND, json={"cnvs_idt_id": first["cnvs_idt_id"], "message": "two"})
    retried = await user_client.post(SEND, json={"cnvs_idt_id": first["cnvs_idt_id"], "message": "two"})

    assert failed.json()["cnvs_idt_id"] == first["cnvs_idt_id"]
    assert retried.status_code == 200
    statuses = [(m.role, m.content, m.status) for m in await stored_messages(db, first["cnvs_idt_id"])]
    assert statuses == [
        ("user", "one", "complete"),
        ("assistant", first["answer"], "complete"),
        ("user", "two", "failed"),
        ("user", "two", "complete"),
        ("assistant", retried.json()["answer"], "complete"),
    ]


async def stream_failure(http, openai_server, db, **script) -> tuple[list, list]:
    openai_server.script(answer="one two three four five six", **script)
    response = await http.post(SEND, json={"message": "break it", "stream": True})
    assert response.status_code == 200
    events = parse_sse(response.text)
    return events, await stored_messages(db, events[0].data["cnvs_idt_id"])


@pytest.mark.parametrize(
    ("script", "status", "fragment"),
    [
        ({"break_after": 2}, 503, "unavailable"),  # connection dropped mid-stream
        ({"error_chunk_after": 2, "error_message": UPSTREAM_SECRET}, 502, "answered with an error"),  # vLLM
    ],
)
async def test_a_stream_broken_midway_ends_with_an_error_event(
    script, status, fragment, user_client, openai_server, db
):
    events, messages = await stream_failure(user_client, openai_server, db, **script)

    assert [event.name for event in events] == ["start", "delta", "delta", "error"]
    error = events[-1].data
    assert error["status"] == status and fragment in error["detail"]
    assert error["cnvs_idt_id"] == events[0].data["cnvs_idt_id"]
    assert UPSTREAM_SECRET not in str(events)
    assert [(m.role, m.content, m.status) for m in messages] == [
        ("user", "break it", "failed"),
        ("assistant", "one two ", "failed"),
    ]


async def test_a_stalled_stream_times_out_with_an_error_event(chat_client, openai_server, db):
    async with chat_client(llm_timeout_seconds=0.3) as http:
        events, messages = await stream_failure(http, openai_server, db, chunk_delay=2)

    assert [event.name for event in events] == ["start", "error"]
    assert events[-1].data["status"] == 504
    assert [(m.role, m.status) for m in messages] == [("user", "failed")]
    await openai_server.wait_until(lambda: openai_server.chat_requests[0].disconnected)


async def test_a_failed_stream_keeps_what_was_said_so_far(user_client, openai_server, db):
    events, messages = await stream_failure(user_client, openai_server, db, break_after=3)

    assert answer_of(events) == messages[-1].content == "one two three "


@pytest.mark.parametrize("stream", [False, True])
async def test_a_shutdown_while_the_llm_has_not_answered_is_503_and_closes_the_llm_request(
    stream, app, user_client, openai_server, db
):
    openai_server.script(hold=True)  # the LLM never answers on its own
    sending = asyncio.create_task(user_client.post(SEND, json={"message": "still there?", "stream": stream}))
    await openai_server.wait_for_requests(1)

    app.state.resources.shutting_down.set()
    response = await asyncio.wait_for(sending, timeout=5)

    body = assert_clear_failure(response, 503, "restarting")
    assert response.headers["retry-after"] == "5"
    await assert_user_message_kept(db, body, "still there?")
    await openai_server.wait_until(lambda: openai_server.chat_requests[0].disconnected)
    metrics = (await user_client.get("/metrics")).text
    assert 'llm_request_duration_seconds_count{outcome="cancelled"} 1.0' in metrics


UNREADABLE = ["not json", "[1, 2]"]  # bad JSON; JSON, but not a completion


@pytest.mark.parametrize(
    "raw_answer",
    [*UNREADABLE, '{"choices": []}', '{"choices": [{"message": {"content": 42}}]}',
     '{"choices": [{"message": {"content": "hi"}}], "usage": {"total_tokens": 1}}'],
)
async def test_a_completion_we_cannot_read_is_502(raw_answer, user_client, openai_server, db):
    """What the LLM sends is checked as it is parsed: a body that is not an OpenAI completion (bad JSON, a wrong
    shape or type, no choice, a usage without its counts) is the upstream's error, never a 500."""
    openai_server.script(raw_answer=raw_answer)

    response = await user_client.post(SEND, json={"message": "say something odd"})

    body = assert_clear_failure(response, 502, "answered with an error")
    await assert_user_message_kept(db, body, "say something odd")


@pytest.mark.parametrize(
    "raw_answer",
    [*UNREADABLE, '{"choices": [{"delta": {"content": 42}}]}', '{"choices": [], "usage": {"total_tokens": 1}}'],
)
async def test_a_chunk_we_cannot_read_ends_the_stream_with_a_502_event(raw_answer, user_client, openai_server, db):
    openai_server.script(raw_answer=raw_answer)

    response = await user_client.post(SEND, json={"message": "say something odd", "stream": True})

    events = parse_sse(response.text)
    assert [event.name for event in events] == ["start", "error"]
    assert events[-1].data["status"] == 502
    messages = await stored_messages(db, events[0].data["cnvs_idt_id"])
    assert [(m.role, m.content, m.status) for m in messages] == [("user", "say something odd", "failed")]


async def test_an_error_event_in_the_stream_is_502(user_client, openai_server, db):
    openai_server.script(raw_answer=f'{{"message": "{UPSTREAM_SECRET}"}}\n\nevent: error\ndata: {{}}')

    response = await user_client.post(SEND, json={"message": "hi", "stream": True})

    events = parse_sse(response.text)
    assert [event.name for event in events] == ["start", "error"]
    assert events[-1].data["status"] == 502 and UPSTREAM_SECRET not in response.text
