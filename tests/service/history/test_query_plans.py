"""The history list queries read the paging index in order: no Sort node, whatever the depth."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from admin_api.history import repository

PAGING_INDEX = "idx_usr_cnvs_smry_page"


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
