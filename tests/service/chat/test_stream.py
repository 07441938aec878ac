"""chat/send with "stream": true: text/event-stream, events in order, the answer stored when it ends."""

from __future__ import annotations

import asyncio
import json

import pytest

from admin_api.chat import llm
from tests.service.chat.conftest import SEND, answer_of, parse_sse, stored_messages

ANSWER = "Streaming works one piece at a time."


async def test_stream_sends_start_then_deltas_then_end_and_stores_the_answer(user_client, openai_server, db):
    openai_server.script(answer=ANSWER)

    response = await user_client.post(SEND, json={"message": "stream please", "stream": True, "temperature": 0})

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert "no-cache" in response.headers["cache-control"]
    assert response.headers["x-accel-buffering"] == "no"
    events = parse_sse(response.text)
    start, *deltas, end = events
    assert start.name == "start" and set(start.data) == {"cnvs_idt_id", "user_message_id"}
    assert [event.name for event in deltas] == ["delta"] * len(ANSWER.split(" "))
    assert answer_of(events) == ANSWER
    assert end.name == "end"
    assert end.data["cnvs_idt_id"] == start.data["cnvs_idt_id"]
    assert end.data["user_message_id"] == start.data["user_message_id"]
    assert end.data["usage"]["completion_tokens"] == len(ANSWER.split())
    messages = await stored_messages(db, start.data["cnvs_idt_id"])
    assert [(m.msg_idt_id, m.role, m.content, m.status) for m in messages] == [
        (start.data["user_message_id"], "user", "stream please", "complete"),
        (end.data["message_id"], "assistant", ANSWER, "complete"),
    ]
    (llm_request,) = openai_server.chat_requests
    assert llm_request.stream and llm_request.temperature == 0
    assert llm_request.body["stream_options"] == {"include_usage": True}


async def test_stream_continues_an_existing_conversation(user_client, openai_server):
    first = (await user_client.post(SEND, json={"message": "one"})).json()

    response = await user_client.post(
        SEND, json={"cnvs_idt_id": first["cnvs_idt_id"], "message": "two", "stream": True}
    )

    assert parse_sse(response.text)[0].data["cnvs_idt_id"] == first["cnvs_idt_id"]
    assert [m["content"] for m in openai_server.chat_requests[-1].messages] == ["one", first["answer"], "two"]


USER_MESSAGES_SQL = """
SELECT m."MSG_CN", m."STTS_CD" FROM "CNVS_MSG" m JOIN "USR_CNVS_SMRY" c USING ("CNVS_IDT_ID")
WHERE c."USR_ID" = $1 AND m."ROLE_CD" = 'user' ORDER BY m."MSG_ID"
"""


@pytest.mark.parametrize("new_conversation", [True, False])
async def test_user_message_is_committed_while_the_llm_has_not_answered(
    new_conversation, user_client, openai_server, db
):
    body = {"message": "are you stored?", "stream": True}
    earlier = []
    if not new_conversation:  # in a conversation, stored before the LLM is asked (the same statement reads its history)
        first = (await user_client.post(SEND, json={"message": "one"})).json()
        body["cnvs_idt_id"] = first["cnvs_idt_id"]
        earlier = [("one", "complete")]
    openai_server.script(hold=True)
    sending = asyncio.create_task(user_client.post(SEND, json=body))
    try:
        await openai_server.wait_for_requests(len(earlier) + 1)
        expected = [*earlier, ("are you stored?", "failed")]
        for _ in range(500):  # a new conversation's first message is stored while the LLM is asked
            stored = [tuple(row) for row in await db.fetch(USER_MESSAGES_SQL, user_client.user.id)]
            if stored == expected or not new_conversation:
                break
            await asyncio.sleep(0.01)
        # Stored, but not answered yet: it becomes 'complete' (context for later turns) with its answer only.
        assert stored == expected
    finally:
        openai_server.release()
    assert (await sending).status_code == 200
    statuses = await db.fetch(
        'SELECT m."ROLE_CD", m."STTS_CD" FROM "CNVS_MSG" m JOIN "USR_CNVS_SMRY" c USING ("CNVS_IDT_ID") '
        'WHERE c."USR_ID" = $1 ORDER BY m."MSG_ID"',
        user_client.user.id,
    )
    assert [tuple(row) for row in statuses][-2:] == [("user", "complete"), ("assistant", "complete")]


async def test_a_server_shutdown_ends_open_streams_with_an_error_event(app, user_client, openai_server, db):
    openai_server.script(answer="word " * 200, chunk_delay=0.05)
    sending = asyncio.create_task(user_client.post(SEND, json={"message": "long one", "stream": True}))
    await openai_server.wait_for_requests(1)
    await asyncio.sleep(0.3)  # some pieces are on their way

    app.state.resources.shutting_down.set()
    response = await sending

    events = parse_sse(response.text)
    assert events[-1].name == "error"
    assert events[-1].data["status"] == 503
    await openai_server.wait_until(lambda: openai_server.chat_requests[0].disconnected)
    messages = await stored_messages(db, events[0].data["cnvs_idt_id"])
    assert [(m.role, m.status) for m in messages] == [("user", "failed"), ("assistant", "failed")]
    assert messages[1].content == answer_of(events)


async def test_the_first_text_is_passed_on_alone_then_what_arrived_with_it_together():
    """The first token is not held back while the chunks that came in the same read are parsed."""

    def chunk(content: str | None) -> bytes:
        return json.dumps({"choices": [{"delta": {} if content is None else {"content": content}}]}).encode()

    class Arrived:  # an LLMStream whose body came in one read
        async def events(self):
            yield [chunk(""), chunk("one"), chunk(" two"), chunk(" three"), chunk(None)]
            yield [chunk(" four")]

    batches = [pieces async for pieces in llm.stream_pieces(Arrived())]

    assert batches == [["one"], [" two", " three"], [" four"]]
