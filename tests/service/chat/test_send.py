"""chat/send without streaming: conversations, context, ownership, validation."""

from __future__ import annotations

import uuid

import pytest

from admin_api.chat.llm import LLMClient
from admin_api.chat.service import CONTEXT_MESSAGES, TITLE_MAX_CHARS
from tests.service.chat.conftest import SEND, stored_messages


async def test_first_message_starts_a_conversation_and_stores_both_sides(user_client, openai_server, db):
    openai_server.script(answer="Hi! How can I help?")

    response = await user_client.post(
        SEND, json={"cnvs_idt_id": "", "message": "Hello, production!", "stream": False, "temperature": 0.7}
    )

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["answer"] == "Hi! How can I help?"
    assert body["usage"] == {"prompt_tokens": 2, "completion_tokens": 5, "total_tokens": 7}
    assert uuid.UUID(body["cnvs_idt_id"]) and uuid.UUID(body["message_id"]) and body["created_at"]
    conversation = await db.fetchrow(
        'SELECT "USR_ID", "CNVS_TTL", "USE_YN" FROM "USR_CNVS_SMRY" WHERE "CNVS_IDT_ID" = $1', body["cnvs_idt_id"]
    )
    assert dict(conversation) == {"USR_ID": user_client.user.id, "CNVS_TTL": "Hello, production!", "USE_YN": "Y"}
    messages = await stored_messages(db, body["cnvs_idt_id"])
    assert [(m.msg_idt_id, m.role, m.content, m.status) for m in messages] == [
        (body["user_message_id"], "user", "Hello, production!", "complete"),
        (body["message_id"], "assistant", "Hi! How can I help?", "complete"),
    ]
    (llm_request,) = openai_server.chat_requests
    assert llm_request.model == "test-model"
    assert llm_request.temperature == 0.7
    assert llm_request.messages == [{"role": "user", "content": "Hello, production!"}]
    assert not llm_request.stream


async def test_the_guide_smoke_test_body_works_with_defaults(user_client, openai_server):
    response = await user_client.post(SEND, json={"message": "Hi"})

    assert response.status_code == 200, response.text
    assert "temperature" not in openai_server.chat_requests[0].body  # the model's own default applies


async def test_next_message_sends_previous_turns_to_the_llm(user_client, openai_server):
    openai_server.script(answer=lambda request: f"answer {len(request.messages)}")
    first = (await user_client.post(SEND, json={"message": "first question"})).json()

    second = await user_client.post(SEND, json={"cnvs_idt_id": first["cnvs_idt_id"], "message": "second"})

    assert second.status_code == 200
    assert second.json()["cnvs_idt_id"] == first["cnvs_idt_id"]
    assert openai_server.chat_requests[-1].messages == [
        {"role": "user", "content": "first question"},
        {"role": "assistant", "content": "answer 1"},
        {"role": "user", "content": "second"},
    ]


async def test_context_is_bounded_to_the_most_recent_messages(user_client, openai_server, seed_conversation):
    history = [("user" if i % 2 == 0 else "assistant", f"old message {i}") for i in range(CONTEXT_MESSAGES + 10)]
    cnvs_idt_id = await seed_conversation(user_client.user.id, messages=history)

    response = await user_client.post(SEND, json={"cnvs_idt_id": cnvs_idt_id, "message": "latest"})

    assert response.status_code == 200
    sent = openai_server.chat_requests[0].messages
    assert len(sent) == CONTEXT_MESSAGES + 1
    assert sent[0]["content"] == "old message 10"
    assert sent[-2]["content"] == f"old message {CONTEXT_MESSAGES + 9}"
    assert sent[-1] == {"role": "user", "content": "latest"}


async def test_long_first_message_gives_a_truncated_single_line_title(user_client, db):
    message = "Please   summarise\nthis " + "very " * 40 + "long text"

    body = (await user_client.post(SEND, json={"message": message})).json()

    title = await db.fetchval('SELECT "CNVS_TTL" FROM "USR_CNVS_SMRY" WHERE "CNVS_IDT_ID" = $1', body["cnvs_idt_id"])
    assert len(title) <= TITLE_MAX_CHARS
    assert title.startswith("Please summarise this very very") and title.endswith("…")


@pytest.mark.parametrize("kind", ["unknown", "other user's", "deleted"])
async def test_a_conversation_that_is_not_yours_is_not_found(
    kind, user_client, other_user_client, seed_conversation, openai_server, db
):
    owner = {"unknown": None, "other user's": other_user_client.user.id, "deleted": user_client.user.id}[kind]
    if owner is None:
        cnvs_idt_id = str(uuid.uuid4())
    else:
        cnvs_idt_id = await seed_conversation(owner, messages=[("user", "secret")], active=kind != "deleted")

    response = await user_client.post(SEND, json={"cnvs_idt_id": cnvs_idt_id, "message": "let me in"})

    assert response.status_code == 404
    assert response.json() == {"detail": "Conversation not found."}
    assert openai_server.chat_requests == []
    assert [m.content for m in await stored_messages(db, cnvs_idt_id)] == ([] if owner is None else ["secret"])


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"message": ""}, "message"),
        ({"message": "   \n "}, "message"),
        ({}, "message"),
        ({"message": 42}, "message"),
        ({"message": "hi", "temperature": 2.5}, "temperature"),
        ({"message": "hi", "temperature": -0.1}, "temperature"),
        ({"message": "hi", "stream": "yes"}, "stream"),
        ({"message": "hi", "cnvs_idt_id": "x" * 65}, "cnvs_idt_id"),
        ({"message": "hi", "model": "gpt-4"}, "model"),
    ],
)
async def test_invalid_bodies_are_422_naming_the_field(body, field, user_client, openai_server):
    response = await user_client.post(SEND, json=body)

    assert response.status_code == 422
    assert [error["loc"][-1] for error in response.json()["detail"]] == [field]
    assert openai_server.chat_requests == []


async def test_message_length_is_bounded_by_max_message_chars(chat_client, openai_server):
    async with chat_client(max_message_chars=10) as http:
        too_long = await http.post(SEND, json={"message": "x" * 11})
        just_right = await http.post(SEND, json={"message": "x" * 10})

    assert too_long.status_code == 422
    assert too_long.json()["detail"] == [
        {"loc": ["body", "message"], "msg": "String should have at most 10 characters", "type": "string_too_long"}
    ]
    assert just_right.status_code == 200
    assert len(openai_server.chat_requests) == 1


async def test_sending_needs_a_session(client, openai_server):
    response = await client.post(SEND, json={"message": "hi"})

    assert response.status_code == 401
    assert openai_server.chat_requests == []


async def test_failed_turns_are_not_sent_as_context(user_client, openai_server):
    first = (await user_client.post(SEND, json={"message": "one"})).json()
    openai_server.queue(status=500)
    failed = await user_client.post(SEND, json={"cnvs_idt_id": first["cnvs_idt_id"], "message": "lost turn"})
    assert failed.status_code == 502

    await user_client.post(SEND, json={"cnvs_idt_id": first["cnvs_idt_id"], "message": "three"})

    assert [m["content"] for m in openai_server.chat_requests[-1].messages] == [
        "one",
        "Hello from the test LLM.",
        "three",
    ]


@pytest.mark.parametrize("api_key", [None, "sk-test-key-9c1d"])
async def test_the_llm_api_key_is_sent_as_a_bearer_token_when_configured(api_key, chat_client, openai_server):
    async with chat_client(llm_api_key=api_key) as http:
        assert (await http.post(SEND, json={"message": "hi"})).status_code == 200
        assert (await http.post(SEND, json={"message": "hi", "stream": True})).status_code == 200

    for request in openai_server.chat_requests:
        assert request.headers.get("authorization") == (f"Bearer {api_key}" if api_key else None)


def test_the_llm_is_reached_through_the_environment_s_proxy_unless_no_proxy(monkeypatch):
    """HTTP_PROXY and NO_PROXY apply to the LLM as they did with the openai SDK (read once, not per request)."""

    def proxy() -> str | None:
        return LLMClient(endpoint="http://vllm:8000/v1", api_key=None, timeout_seconds=1,
                         connect_timeout_seconds=1).proxy

    for name in ("HTTP_PROXY", "http_proxy", "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    assert proxy() is None
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.example:3128")
    assert proxy() == "http://proxy.example:3128"
    monkeypatch.setenv("NO_PROXY", "vllm")
    assert proxy() is None
