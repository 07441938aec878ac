"""SQL injection in every string field. The queries are parameterised (asyncpg $n): these payloads would
change the result if they were ever spliced into SQL (an always-true OR widening a filter to every row, a
stacked statement, a comment cutting off the owner check). Each is stored or matched as plain text."""

from __future__ import annotations

import pytest

from tests.security.helpers import HISTORY_DELETE, HISTORY_DETAIL, HISTORY_LIST, HISTORY_RENAME, SEND, post_raw_json

# Each fits the conversation id's 64 characters, so it reaches the query rather than being refused by length.
PAYLOADS = [
    "' OR '1'='1",
    "' OR 1=1 --",
    "x' OR \"USR_ID\" <> 0 --",
    "'; UPDATE \"USR_CNVS_SMRY\" SET \"USE_YN\" = 'N'; --",
    "'; DROP TABLE \"CNVS_MSG\"; --",
    "\\' OR 1=1 /*",
    "$1) OR (1=1",
    "' UNION SELECT \"USR_NM\",\"PWD_HASH\",now(),now() FROM \"USR_ACCT\"--",
]


@pytest.fixture
async def victim_data(make_user, seed_conversation):
    """Another user's conversation: what an injected OR/UNION would expose or change."""
    victim = await make_user()
    cnvs = await seed_conversation(victim.id, title="victim title", messages=[("user", "victim text")])
    return victim, cnvs


async def _victim_intact(db, victim_data) -> None:
    _, cnvs = victim_data
    row = await db.fetchrow('SELECT "CNVS_TTL", "USE_YN" FROM "USR_CNVS_SMRY" WHERE "CNVS_IDT_ID" = $1', cnvs)
    assert (row["CNVS_TTL"], row["USE_YN"]) == ("victim title", "Y")
    assert await db.fetchval('SELECT count(*) FROM "CNVS_MSG" WHERE "CNVS_IDT_ID" = $1', cnvs) == 1


@pytest.mark.parametrize("payload", PAYLOADS)
async def test_login_fields(client, make_user, payload):
    user = await make_user()
    for body in (
        {"username": payload, "password": payload},
        {"username": user.username + payload, "password": payload},
        {"username": user.username, "password": payload},
    ):
        response = await client.post("/api/v1/auth/login", json=body)
        # 429: the per-address throttle (spraying) counts this session's many failed logins from one address.
        assert response.status_code in (401, 422, 429), (body, response.text)
        assert "set-cookie" not in response.headers


@pytest.mark.parametrize("payload", PAYLOADS)
async def test_conversation_id_fields(user_client, victim_data, db, payload, openai_server):
    for path, body in (
        (HISTORY_DETAIL, {"cnvs_idt_id": payload}),
        (HISTORY_RENAME, {"cnvs_idt_id": payload, "title": "renamed"}),
        (HISTORY_DELETE, {"cnvs_idt_id": payload}),
        (SEND, {"cnvs_idt_id": payload, "message": "hi"}),
    ):
        response = await user_client.post(path, json=body)
        assert response.status_code == 404, (path, response.text)
        assert "victim" not in response.text
    assert openai_server.chat_requests == []
    await _victim_intact(db, victim_data)


@pytest.mark.parametrize("payload", PAYLOADS)
async def test_text_fields_are_stored_verbatim(user_client, victim_data, db, payload, openai_server):
    openai_server.script(answer=payload)  # the LLM's answer is a string field too
    sent = await user_client.post(SEND, json={"message": payload})
    assert sent.status_code == 200, sent.text
    cnvs = sent.json()["cnvs_idt_id"]
    assert sent.json()["answer"] == payload
    renamed = await user_client.post(HISTORY_RENAME, json={"cnvs_idt_id": cnvs, "title": payload})
    assert renamed.status_code == 200
    assert renamed.json()["title"] == payload.strip()
    detail = (await user_client.post(HISTORY_DETAIL, json={"cnvs_idt_id": cnvs})).json()
    assert [m["content"] for m in detail["messages"]] == [payload, payload]
    assert openai_server.chat_requests[-1].messages[-1]["content"] == payload
    # Only the caller's one conversation is listed: no OR/UNION widened anything.
    listing = (await user_client.post(HISTORY_LIST, json={})).json()
    assert listing["total"] == 1 and [i["cnvs_idt_id"] for i in listing["items"]] == [cnvs]
    await _victim_intact(db, victim_data)


async def test_a_crafted_cursor_cannot_inject(user_client, victim_data, db):
    import base64
    import json

    for cnvs in PAYLOADS:
        raw = json.dumps(["2999-01-01T00:00:00+00:00", cnvs]).encode()
        cursor = base64.urlsafe_b64encode(raw).decode().rstrip("=")
        response = await user_client.post(HISTORY_LIST, json={"cursor": cursor})
        assert response.status_code == 200, response.text
        assert response.json()["items"] == []
    await _victim_intact(db, victim_data)


@pytest.mark.parametrize(
    ("path", "field", "extra"),
    [
        ("/api/v1/auth/login", "username", {"password": "x"}),
        (HISTORY_DETAIL, "cnvs_idt_id", {}),
        (HISTORY_RENAME, "cnvs_idt_id", {"title": "t"}),
        (HISTORY_RENAME, "title", {"cnvs_idt_id": "c"}),
        (HISTORY_DELETE, "cnvs_idt_id", {}),
        (SEND, "cnvs_idt_id", {"message": "m"}),
        (SEND, "message", {}),
    ],
)
@pytest.mark.parametrize("text", ["a\x00b", "\ud800", "x\udfff"], ids=["nul", "lone-high-surrogate", "lone-low"])
async def test_unstorable_text_is_422_not_500(user_client, path, field, extra, text):
    """PostgreSQL text cannot hold NUL, and UTF-8 cannot encode a lone surrogate: 422 naming the field."""
    response = await post_raw_json(user_client, path, {field: text, **extra})
    assert response.status_code == 422, (path, field, response.status_code, response.text)
    assert response.json()["detail"][0]["loc"] == ["body", field]


async def test_a_cursor_hiding_a_nul_is_422(user_client):
    import base64
    import json

    raw = json.dumps(["2999-01-01T00:00:00+00:00", "a\x00b"]).encode()
    cursor = base64.urlsafe_b64encode(raw).decode().rstrip("=")
    response = await user_client.post(HISTORY_LIST, json={"cursor": cursor})
    assert response.status_code == 422, response.text


def test_payloads_fit_the_id_field():
    assert all(len(payload) <= 64 for payload in PAYLOADS)
