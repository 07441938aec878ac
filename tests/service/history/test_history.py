"""History list/detail/rename/delete, on conversations seeded with SQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

BASE_TIME = datetime(2025, 10, 22, 12, 0, tzinfo=UTC)


async def _seed_many(seed_conversation, user_id: int, count: int) -> list[str]:
    """`count` conversations one minute apart; returns their ids newest first."""
    ids = [
        await seed_conversation(user_id, title=f"Conversation {n}", reg_dt=BASE_TIME + timedelta(minutes=n))
        for n in range(count)
    ]
    return ids[::-1]


async def test_list_is_newest_first_own_and_active_only(user_client, other_user_client, seed_conversation):
    mine = await _seed_many(seed_conversation, user_client.user.id, 3)
    await seed_conversation(user_client.user.id, title="Deleted", active=False)
    await seed_conversation(other_user_client.user.id, title="Someone else's")

    response = await user_client.post("/api/v1/history/list", json={"page": 1, "page_size": 10})
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"items", "total", "page", "page_size", "next_cursor"}
    assert [item["cnvs_idt_id"] for item in body["items"]] == mine
    assert body["total"] == 3
    assert (body["page"], body["page_size"], body["next_cursor"]) == (1, 10, None)
    assert set(body["items"][0]) == {"cnvs_idt_id", "title", "reg_dt", "upd_dt"}
    assert body["items"][0]["title"] == "Conversation 2"
    assert response.headers["cache-control"] == "no-store"


async def test_offset_pages(user_client, seed_conversation):
    ids = await _seed_many(seed_conversation, user_client.user.id, 5)
    pages = []
    for page in (1, 2, 3, 4):
        body = (await user_client.post("/api/v1/history/list", json={"page": page, "page_size": 2})).json()
        assert body["total"] == 5
        pages.append([item["cnvs_idt_id"] for item in body["items"]])
    assert pages == [ids[0:2], ids[2:4], ids[4:5], []]


async def test_keyset_pages_walk_the_same_order(user_client, seed_conversation):
    ids = await _seed_many(seed_conversation, user_client.user.id, 4)
    # Two conversations in the same microsecond: the id breaks the tie, so none is skipped or repeated.
    same_time = BASE_TIME + timedelta(hours=1)
    tied = sorted([await seed_conversation(user_client.user.id, reg_dt=same_time) for _ in range(3)], reverse=True)
    expected = tied + ids

    seen, cursor = [], None
    while True:
        request = {"page_size": 2} if cursor is None else {"page_size": 2, "cursor": cursor}
        body = (await user_client.post("/api/v1/history/list", json=request)).json()
        seen += [item["cnvs_idt_id"] for item in body["items"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == expected


async def test_defaults_and_bounds(user_client):
    body = (await user_client.post("/api/v1/history/list", json={})).json()
    assert (body["page"], body["page_size"]) == (1, 20)
    for bad in ({"page_size": 0}, {"page_size": 101}, {"page": 0}, {"page": "1"}, {"page_size": 1.5}):
        response = await user_client.post("/api/v1/history/list", json=bad)
        assert response.status_code == 422, bad
        assert response.json()["detail"][0]["loc"][0] == "body"
    assert (await user_client.post("/api/v1/history/list", json={"page_size": 100})).status_code == 200


@pytest.mark.parametrize("cursor", ["not-base64!", "bm90IGpzb24", "WyJ5ZXN0ZXJkYXkiLCJ4Il0", "W10"])
async def test_bad_cursor_is_422(user_client, cursor):
    response = await user_client.post("/api/v1/history/list", json={"cursor": cursor})
    assert response.status_code == 422
    assert "cursor is not valid" in response.json()["detail"][0]["msg"]


async def test_unknown_fields_are_rejected(user_client):
    response = await user_client.post("/api/v1/history/list", json={"page": 1, "page_size": 10, "user_id": 1})
    assert response.status_code == 422
    assert response.json()["detail"] == [
        {"loc": ["body", "user_id"], "msg": "Extra inputs are not permitted", "type": "extra_forbidden"}
    ]


async def test_detail_has_the_messages_in_order(user_client, seed_conversation):
    turns = [("user", "first question"), ("assistant", "first answer"), ("user", "second"), ("assistant", "2nd")]
    cnvs_idt_id = await seed_conversation(user_client.user.id, title="Chat", messages=turns)
    response = await user_client.post("/api/v1/history/detail", json={"cnvs_idt_id": cnvs_idt_id})
    assert response.status_code == 200
    body = response.json()
    assert body["cnvs_idt_id"] == cnvs_idt_id
    assert body["title"] == "Chat"
    assert [(m["role"], m["content"]) for m in body["messages"]] == turns
    assert set(body["messages"][0]) == {"message_id", "role", "content", "status", "reg_dt", "sources"}
    assert body["messages"][1]["sources"] is None  # an answer given without documents
    assert body["messages"][0]["status"] == "complete"


async def test_rename(user_client, seed_conversation):
    cnvs_idt_id = await seed_conversation(user_client.user.id, title="Old")
    response = await user_client.post(
        "/api/v1/history/rename", json={"cnvs_idt_id": cnvs_idt_id, "title": "  New title  "}
    )
    assert response.status_code == 200
    assert response.json()["title"] == "New title"
    listed = (await user_client.post("/api/v1/history/list", json={})).json()["items"]
    assert listed[0]["title"] == "New title"
    assert listed[0]["upd_dt"] > listed[0]["reg_dt"]

    for bad_title in ("", "   ", "x" * 201):
        bad = await user_client.post("/api/v1/history/rename", json={"cnvs_idt_id": cnvs_idt_id, "title": bad_title})
        assert bad.status_code == 422, bad_title


async def test_delete_is_soft(user_client, seed_conversation, db):
    cnvs_idt_id = await seed_conversation(user_client.user.id, messages=[("user", "hi")])
    response = await user_client.post("/api/v1/history/delete", json={"cnvs_idt_id": cnvs_idt_id})
    assert response.status_code == 200
    assert response.json() == {"cnvs_idt_id": cnvs_idt_id, "deleted": True}

    assert (await user_client.post("/api/v1/history/list", json={})).json()["total"] == 0
    assert (await user_client.post("/api/v1/history/detail", json={"cnvs_idt_id": cnvs_idt_id})).status_code == 404
    assert (await user_client.post("/api/v1/history/delete", json={"cnvs_idt_id": cnvs_idt_id})).status_code == 404
    # Still in the table, marked unused, messages kept.
    row = await db.fetchrow('SELECT "USE_YN" FROM "USR_CNVS_SMRY" WHERE "CNVS_IDT_ID" = $1', cnvs_idt_id)
    assert row["USE_YN"] == "N"
    assert await db.fetchval('SELECT count(*) FROM "CNVS_MSG" WHERE "CNVS_IDT_ID" = $1', cnvs_idt_id) == 1


@pytest.mark.parametrize(
    ("path", "extra"),
    [("/api/v1/history/detail", {}), ("/api/v1/history/rename", {"title": "Mine now"}), ("/api/v1/history/delete", {})],
)
async def test_someone_elses_conversation_is_not_found(
    user_client, other_user_client, seed_conversation, db, path, extra
):
    theirs = await seed_conversation(other_user_client.user.id, title="Private", messages=[("user", "secret")])
    response = await user_client.post(path, json={"cnvs_idt_id": theirs, **extra})
    assert response.status_code == 404
    assert response.json() == {"detail": "Conversation not found."}
    # Exactly as for an id that does not exist at all.
    missing = await user_client.post(path, json={"cnvs_idt_id": "no-such-conversation", **extra})
    assert (missing.status_code, missing.json()) == (404, response.json())
    # And nothing changed.
    row = await db.fetchrow('SELECT "CNVS_TTL", "USE_YN" FROM "USR_CNVS_SMRY" WHERE "CNVS_IDT_ID" = $1', theirs)
    assert (row["CNVS_TTL"], row["USE_YN"]) == ("Private", "Y")


async def test_detail_validation(user_client):
    for bad in ({}, {"cnvs_idt_id": ""}, {"cnvs_idt_id": "x" * 65}, {"cnvs_idt_id": 5}):
        assert (await user_client.post("/api/v1/history/detail", json=bad)).status_code == 422, bad
