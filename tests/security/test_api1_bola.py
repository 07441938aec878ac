"""OWASP API1:2023 Broken Object Level Authorization.

Another user's conversation, by its real id, through every endpoint that takes a conversation id: 404 with the
same body as an unknown id (existence is not revealed), never its data, and nothing about it changes.
"""

from __future__ import annotations

import uuid

import pytest

from tests.security.helpers import HISTORY_DELETE, HISTORY_DETAIL, HISTORY_LIST, HISTORY_RENAME, SEND

SECRET_TITLE = "victim's secret plans"
SECRET_TEXT = "the launch code is 0000"


@pytest.fixture
async def victims_conversation(user_client, seed_conversation) -> str:
    return await seed_conversation(
        user_client.user.id, title=SECRET_TITLE, messages=[("user", SECRET_TEXT), ("assistant", "noted")]
    )


def _attempts(cnvs_idt_id: str) -> list[tuple[str, dict]]:
    return [
        (HISTORY_DETAIL, {"cnvs_idt_id": cnvs_idt_id}),
        (HISTORY_RENAME, {"cnvs_idt_id": cnvs_idt_id, "title": "pwned"}),
        (HISTORY_DELETE, {"cnvs_idt_id": cnvs_idt_id}),
        (SEND, {"cnvs_idt_id": cnvs_idt_id, "message": "what did we say before?"}),
        (SEND, {"cnvs_idt_id": cnvs_idt_id, "message": "what did we say before?", "stream": True}),
    ]


async def test_another_users_conversation_is_404_on_every_endpoint(
    user_client, other_user_client, victims_conversation, openai_server, db
):
    unknown = str(uuid.uuid4())
    for (path, body), (_, unknown_body) in zip(_attempts(victims_conversation), _attempts(unknown), strict=True):
        response = await other_user_client.post(path, json=body)
        assert response.status_code == 404, (path, response.status_code, response.text)
        assert SECRET_TITLE not in response.text and SECRET_TEXT not in response.text
        # Indistinguishable from an id that does not exist at all.
        baseline = await other_user_client.post(path, json=unknown_body)
        assert (baseline.status_code, baseline.json()) == (response.status_code, response.json()), path

    # Nothing reached the LLM (the victim's history was never sent as context), nothing changed.
    assert openai_server.chat_requests == []
    row = await db.fetchrow(
        'SELECT "CNVS_TTL", "USE_YN" FROM "USR_CNVS_SMRY" WHERE "CNVS_IDT_ID" = $1', victims_conversation
    )
    assert (row["CNVS_TTL"], row["USE_YN"]) == (SECRET_TITLE, "Y")
    count = await db.fetchval('SELECT count(*) FROM "CNVS_MSG" WHERE "CNVS_IDT_ID" = $1', victims_conversation)
    assert count == 2

    # The owner still sees it intact.
    detail = await user_client.post(HISTORY_DETAIL, json={"cnvs_idt_id": victims_conversation})
    assert detail.status_code == 200
    assert detail.json()["title"] == SECRET_TITLE


async def test_another_users_conversations_never_appear_in_lists(user_client, other_user_client, victims_conversation):
    listing = await other_user_client.post(HISTORY_LIST, json={"page_size": 100})
    assert listing.status_code == 200
    assert listing.json()["total"] == 0
    assert victims_conversation not in listing.text


async def test_a_cursor_naming_another_users_conversation_yields_only_own_rows(
    user_client, other_user_client, seed_conversation
):
    """Keyset cursors are opaque but client-held: one crafted from the victim's rows must still be scoped."""
    for i in range(3):
        await seed_conversation(user_client.user.id, title=f"victim {i}")
    mine = await seed_conversation(other_user_client.user.id, title="mine")
    first = await user_client.post(HISTORY_LIST, json={"page_size": 1})
    victims_cursor = first.json()["next_cursor"]
    assert victims_cursor
    stolen = await other_user_client.post(HISTORY_LIST, json={"page_size": 100, "cursor": victims_cursor})
    assert stolen.status_code == 200
    assert "victim" not in stolen.text
    assert {item["cnvs_idt_id"] for item in stolen.json()["items"]} <= {mine}


async def test_idempotency_keys_are_per_user(user_client, other_user_client, openai_server):
    """The same Idempotency-Key from another user must not replay the first user's answer."""
    openai_server.script(answer="private answer for the first user")
    key = {"Idempotency-Key": "shared-key-123"}
    body = {"message": "hello"}
    first = await user_client.post(SEND, json=body, headers=key)
    assert first.status_code == 200
    openai_server.script(answer="the second user's own answer")
    second = await other_user_client.post(SEND, json=body, headers=key)
    assert second.status_code == 200
    assert second.json()["answer"] == "the second user's own answer"
    assert second.json()["cnvs_idt_id"] != first.json()["cnvs_idt_id"]
    assert "Idempotent-Replayed" not in second.headers


async def test_a_deleted_conversation_is_gone_for_its_owner_too(user_client, victims_conversation):
    assert (await user_client.post(HISTORY_DELETE, json={"cnvs_idt_id": victims_conversation})).status_code == 200
    for path, body in _attempts(victims_conversation):
        response = await user_client.post(path, json=body)
        assert response.status_code == 404, (path, response.text)
