"""The history list and message page queries read their index in order: no Sort node, whatever the depth."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from admin_api.history import repository

PAGING_INDEX = "idx_usr_cnvs_smry_page"
MESSAGES_INDEX = "idx_cnvs_msg_cnvs_idt_id_msg_id"


@pytest.fixture(scope="module")
async def crowded_user(db) -> int:
    """60 users with 200 conversations each (a tenth deleted), analyzed, so the planner sees real statistics."""
    async with db.acquire() as conn, conn.transaction():
        user_ids = await conn.fetch(
            """
            INSERT INTO "USR_ACCT" ("USR_NM", "PWD_HASH")
            SELECT 'plan-' || g || '-' || md5(random()::text), 'x' FROM generate_series(1, 60) AS g
            RETURNING "USR_ID"
            """
        )
        await conn.execute(
            """
            INSERT INTO "USR_CNVS_SMRY" ("CNVS_IDT_ID", "USR_ID", "CNVS_TTL", "USE_YN", "REG_DT")
            SELECT gen_random_uuid()::text, u, 'Conversation ' || n,
                   CASE WHEN n % 10 = 0 THEN 'N' ELSE 'Y' END,
                   timestamptz '2025-01-01' + n * interval '1 minute'
            FROM unnest($1::bigint[]) AS u, generate_series(1, 200) AS n
            """,
            [row["USR_ID"] for row in user_ids],
        )
    await db.execute('ANALYZE "USR_CNVS_SMRY"')
    return user_ids[len(user_ids) // 2]["USR_ID"]


def _nodes(plan: dict):
    yield plan
    for child in plan.get("Plans", []):
        yield from _nodes(child)


async def _plan(db, sql: str, *args) -> list[dict]:
    explained = await db.fetchval("EXPLAIN (FORMAT JSON) " + sql, *args)
    return list(_nodes(json.loads(explained)[0]["Plan"]))


@pytest.mark.parametrize("offset", [0, 100])
async def test_offset_page_is_an_index_scan_without_sort(db, crowded_user, offset):
    nodes = await _plan(db, repository.LIST_BY_OFFSET_SQL, crowded_user, 21, offset)
    assert not [n for n in nodes if "Sort" in n["Node Type"]], nodes
    assert PAGING_INDEX in {n.get("Index Name") for n in nodes}, nodes


async def test_keyset_page_is_an_index_scan_without_sort(db, crowded_user):
    cursor_time = datetime(2025, 1, 1, 1, 40, tzinfo=UTC)
    nodes = await _plan(db, repository.LIST_AFTER_CURSOR_SQL, crowded_user, cursor_time, "~", 21)
    assert not [n for n in nodes if "Sort" in n["Node Type"]], nodes
    scans = [n for n in nodes if n.get("Index Name") == PAGING_INDEX]
    assert scans, nodes
    # The cursor is where the index scan starts, not a filter over rows read from the beginning.
    assert '"REG_DT"' in scans[0]["Index Cond"], scans[0]


async def test_count_uses_the_partial_index(db, crowded_user):
    nodes = await _plan(db, repository.COUNT_SQL, crowded_user)
    assert {n.get("Index Name") for n in nodes} & {PAGING_INDEX, "idx_usr_cnvs_smry_usr_id_reg_dt"}, nodes


@pytest.fixture(scope="module")
async def long_conversation(db, crowded_user) -> tuple[str, int]:
    """crowded_user's 200 conversations with 300 messages each, their turns interleaved as in real use,
    analyzed (enough rows that what earlier tests stored does not sway the statistics); one of them, and a
    message id in its middle."""
    async with db.acquire() as conn, conn.transaction():
        await conn.execute(
            """
            INSERT INTO "CNVS_MSG" ("MSG_IDT_ID", "CNVS_IDT_ID", "ROLE_CD", "MSG_CN")
            SELECT gen_random_uuid()::text, c."CNVS_IDT_ID", 'user', 'message ' || n
            FROM (SELECT "CNVS_IDT_ID" FROM "USR_CNVS_SMRY" WHERE "USR_ID" = $1) AS c, generate_series(1, 300) AS n
            ORDER BY n
            """,
            crowded_user,
        )
    await db.execute('ANALYZE "CNVS_MSG"')
    cnvs_idt_id = await db.fetchval('SELECT "CNVS_IDT_ID" FROM "CNVS_MSG" ORDER BY "MSG_ID" DESC LIMIT 1')
    middle = await db.fetchval(
        'SELECT "MSG_ID" FROM "CNVS_MSG" WHERE "CNVS_IDT_ID" = $1 ORDER BY "MSG_ID" OFFSET 150 LIMIT 1', cnvs_idt_id
    )
    return cnvs_idt_id, middle


async def test_message_pages_are_an_index_scan_without_sort(db, long_conversation):
    cnvs_idt_id, middle = long_conversation
    for nodes in (
        await _plan(db, repository.LATEST_MESSAGES_SQL, cnvs_idt_id, 21),
        await _plan(db, repository.MESSAGES_BEFORE_SQL, cnvs_idt_id, middle, 21),
    ):
        assert not [n for n in nodes if "Sort" in n["Node Type"]], nodes
        scans = [n for n in nodes if n.get("Index Name") == MESSAGES_INDEX]
        assert scans, [(n["Node Type"], n.get("Index Name"), n.get("Index Cond"), n.get("Filter")) for n in nodes]
    # The cursor is where the scan starts, not a filter over the conversation's newer messages.
    assert '"MSG_ID"' in scans[0]["Index Cond"], scans[0]
