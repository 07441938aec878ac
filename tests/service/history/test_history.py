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
    assert set(body) == {"cnvs_idt_id", "title", "reg_dt", "upd_dt", "messages", "next_cursor"}
    assert body["cnvs_idt_id"] == cnvs_idt_id
    assert body["title"] == "Chat"
    assert [(m["role"], m["content"]) for m in body["messages"]] == turns
    assert body["next_cursor"] is None  # the whole conversation fits in the first page
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
    for limit in (0, 501, "5", 1.5, True):
        response = await user_client.post("/api/v1/history/detail", json={"cnvs_idt_id": "x", "limit": limit})
        assert response.status_code == 422, limit
        assert response.json()["detail"][0]["loc"] == ["body", "limit"]


async def test_detail_page_sizes_are_settings(make_settings, make_user, login, seed_conversation, db):
    from admin_api.main import create_app

    from tests.service.conftest import client_for

    app = create_app(make_settings(history_messages_page_size=7, history_messages_max_page_size=20))
    user = await make_user()
    cnvs_idt_id = await seed_conversation(user.id, title="Sized")
    await _seed_messages(db, cnvs_idt_id, 30)
    async with app.router.lifespan_context(app), client_for(app) as http:
        await login(http, user.username, user.password)
        assert [len(page) for page in await _walk_detail(http, cnvs_idt_id)] == [7, 7, 7, 7, 2]
        assert [len(page) for page in await _walk_detail(http, cnvs_idt_id, limit=20)] == [20, 10]
        too_many = await http.post("/api/v1/history/detail", json={"cnvs_idt_id": cnvs_idt_id, "limit": 21})
        assert too_many.status_code == 422 and too_many.json()["detail"][0]["loc"] == ["body", "limit"]
        assert "20" in too_many.json()["detail"][0]["msg"]


async def _seed_messages(db, cnvs_idt_id: str, count: int) -> list[str]:
    """`count` messages in one statement (so all with the same REG_DT); their contents, in stored order."""
    await db.execute(
        'INSERT INTO "CNVS_MSG" ("MSG_IDT_ID", "CNVS_IDT_ID", "ROLE_CD", "MSG_CN") '
        "SELECT gen_random_uuid()::text, $1, CASE WHEN n % 2 = 1 THEN 'user' ELSE 'assistant' END, 'message ' || n "
        "FROM generate_series(1, $2) AS n ORDER BY n",
        cnvs_idt_id,
        count,
    )
    return [f"message {n}" for n in range(1, count + 1)]


async def _walk_detail(http, cnvs_idt_id: str, **request) -> list[list[dict]]:
    """Every page of history/detail, in the order asked for (newest page first)."""
    pages, cursor = [], None
    while True:
        body = {"cnvs_idt_id": cnvs_idt_id, **request, **({"cursor": cursor} if cursor else {})}
        response = await http.post("/api/v1/history/detail", json=body)
        assert response.status_code == 200, response.text
        pages.append(response.json()["messages"])
        cursor = response.json()["next_cursor"]
        if cursor is None:
            return pages


@pytest.mark.parametrize(("request_limit", "page_size", "pages"), [(None, 100, 20), (500, 500, 4), (333, 333, 7)])
async def test_a_long_conversation_comes_in_bounded_pages(
    user_client, seed_conversation, db, request_limit, page_size, pages
):
    # FINDING (fixed): history/detail returned every message at once (6,000 long ones: a 49 MB response).
    cnvs_idt_id = await seed_conversation(user_client.user.id, title="Long")
    contents = await _seed_messages(db, cnvs_idt_id, 2000)

    walked = await _walk_detail(user_client, cnvs_idt_id, **({"limit": request_limit} if request_limit else {}))
    assert len(walked) == pages
    assert all(len(page) == page_size for page in walked[:-1]) and 0 < len(walked[-1]) <= page_size
    assert [m["content"] for m in walked[0]] == contents[-page_size:]  # the newest first, oldest first within
    everything = [m for page in reversed(walked) for m in page]
    assert [m["content"] for m in everything] == contents  # each exactly once, in order
    assert len({m["message_id"] for m in everything}) == 2000


async def test_paging_back_is_not_disturbed_by_new_messages(user_client, seed_conversation, db):
    cnvs_idt_id = await seed_conversation(user_client.user.id)
    contents = await _seed_messages(db, cnvs_idt_id, 25)
    first = (await user_client.post("/api/v1/history/detail", json={"cnvs_idt_id": cnvs_idt_id, "limit": 10})).json()
    await _seed_messages(db, cnvs_idt_id, 3)  # a turn arrives while the client reads back
    cursor, older = first["next_cursor"], []
    while cursor:
        body = {"cnvs_idt_id": cnvs_idt_id, "limit": 10, "cursor": cursor}
        page = (await user_client.post("/api/v1/history/detail", json=body)).json()
        older = page["messages"] + older
        cursor = page["next_cursor"]
    assert [m["content"] for m in older + first["messages"]] == contents


@pytest.mark.parametrize("cursor", ["not-base64!", "bm90IGpzb24", "WyJ5ZXN0ZXJkYXkiLCJ4Il0", "W10", "x" * 257])
async def test_detail_bad_cursor_is_422(user_client, seed_conversation, cursor):
    cnvs_idt_id = await seed_conversation(user_client.user.id, messages=[("user", "hi")])
    response = await user_client.post("/api/v1/history/detail", json={"cnvs_idt_id": cnvs_idt_id, "cursor": cursor})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "cursor"]


async def test_a_cursor_from_another_conversation_is_422(user_client, other_user_client, seed_conversation, db):
    mine = await seed_conversation(user_client.user.id)
    await _seed_messages(db, mine, 3)
    cursor = (await user_client.post("/api/v1/history/detail", json={"cnvs_idt_id": mine, "limit": 1})).json()[
        "next_cursor"
    ]
    other = await seed_conversation(user_client.user.id, messages=[("user", "elsewhere")])
    response = await user_client.post("/api/v1/history/detail", json={"cnvs_idt_id": other, "cursor": cursor})
    assert response.status_code == 422
    assert response.json()["detail"] == [
        {"loc": ["body", "cursor"], "msg": "Value error, cursor is not valid; pass back a next_cursor unchanged",
         "type": "value_error"}
    ]
    # Someone else's conversation with my cursor: not found, as without one (nothing about it is told).
    theirs = await seed_conversation(other_user_client.user.id, messages=[("user", "secret")])
    response = await user_client.post("/api/v1/history/detail", json={"cnvs_idt_id": theirs, "cursor": cursor})
    assert (response.status_code, response.json()) == (404, {"detail": "Conversation not found."})
