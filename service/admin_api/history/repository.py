"""SQL for history. The list queries match the partial index idx_usr_cnvs_smry_page
("USR_ID", "REG_DT" DESC, "CNVS_IDT_ID" DESC) WHERE "USE_YN" = 'Y': an index scan, no sort
(tests/service/history/test_query_plans.py holds them to that)."""

from __future__ import annotations

from datetime import datetime

import asyncpg

from admin_api.conversations import SUMMARY_COLUMNS as _COLUMNS

_ORDER = 'ORDER BY "REG_DT" DESC, "CNVS_IDT_ID" DESC'

LIST_BY_OFFSET_SQL = f"""
SELECT {_COLUMNS} FROM "USR_CNVS_SMRY"
WHERE "USR_ID" = $1 AND "USE_YN" = 'Y'
{_ORDER}
LIMIT $2 OFFSET $3
"""

# The row comparison is what lets the index start right after the cursor (a unique tie-breaker
# makes it exact when two conversations share a timestamp).
LIST_AFTER_CURSOR_SQL = f"""
SELECT {_COLUMNS} FROM "USR_CNVS_SMRY"
WHERE "USR_ID" = $1 AND "USE_YN" = 'Y' AND ("REG_DT", "CNVS_IDT_ID") < ($2, $3)
{_ORDER}
LIMIT $4
"""

COUNT_SQL = """SELECT count(*) FROM "USR_CNVS_SMRY" WHERE "USR_ID" = $1 AND "USE_YN" = 'Y'"""

# Messages page back from the newest on idx_cnvs_msg_cnvs_idt_id_msg_id ("CNVS_IDT_ID", "MSG_ID"), read
# backwards from where the page starts: the same cost at any depth. "MSG_ID" is the order they were stored
# in ("REG_DT" is not: a turn's messages may share one).
_MESSAGE_COLUMNS = '"MSG_IDT_ID", "ROLE_CD", "MSG_CN", "STTS_CD", "REG_DT", "SRC_JSON"'

LATEST_MESSAGES_SQL = f"""
SELECT {_MESSAGE_COLUMNS} FROM "CNVS_MSG"
WHERE "CNVS_IDT_ID" = $1
ORDER BY "MSG_ID" DESC
LIMIT $2
"""

MESSAGES_BEFORE_SQL = f"""
SELECT {_MESSAGE_COLUMNS} FROM "CNVS_MSG"
WHERE "CNVS_IDT_ID" = $1 AND "MSG_ID" < $2
ORDER BY "MSG_ID" DESC
LIMIT $3
"""

MESSAGE_POSITION_SQL = """SELECT "MSG_ID" FROM "CNVS_MSG" WHERE "MSG_IDT_ID" = $1 AND "CNVS_IDT_ID" = $2"""

RENAME_SQL = f"""
UPDATE "USR_CNVS_SMRY" SET "CNVS_TTL" = $3, "UPD_DT" = now()
WHERE "CNVS_IDT_ID" = $1 AND "USR_ID" = $2 AND "USE_YN" = 'Y'
RETURNING {_COLUMNS}
"""

SOFT_DELETE_SQL = """
UPDATE "USR_CNVS_SMRY" SET "USE_YN" = 'N', "UPD_DT" = now()
WHERE "CNVS_IDT_ID" = $1 AND "USR_ID" = $2 AND "USE_YN" = 'Y'
RETURNING "CNVS_IDT_ID"
"""


async def list_by_offset(conn: asyncpg.Connection, user_id: int, limit: int, offset: int) -> list[asyncpg.Record]:
    return await conn.fetch(LIST_BY_OFFSET_SQL, user_id, limit, offset)


async def list_after_cursor(
    conn: asyncpg.Connection, user_id: int, limit: int, reg_dt: datetime, cnvs_idt_id: str
) -> list[asyncpg.Record]:
    return await conn.fetch(LIST_AFTER_CURSOR_SQL, user_id, reg_dt, cnvs_idt_id, limit)


async def count_active(conn: asyncpg.Connection, user_id: int) -> int:
    return await conn.fetchval(COUNT_SQL, user_id)


async def latest_messages(conn: asyncpg.Connection, cnvs_idt_id: str, limit: int) -> list[asyncpg.Record]:
    """The last `limit` messages, newest first."""
    return await conn.fetch(LATEST_MESSAGES_SQL, cnvs_idt_id, limit)


async def messages_before(conn: asyncpg.Connection, cnvs_idt_id: str, msg_id: int, limit: int) -> list[asyncpg.Record]:
    """The `limit` messages stored just before message `msg_id`, newest first."""
    return await conn.fetch(MESSAGES_BEFORE_SQL, cnvs_idt_id, msg_id, limit)


async def message_position(conn: asyncpg.Connection, cnvs_idt_id: str, msg_idt_id: str) -> int | None:
    """The "MSG_ID" of a message of this conversation, or None."""
    return await conn.fetchval(MESSAGE_POSITION_SQL, msg_idt_id, cnvs_idt_id)


async def rename(conn: asyncpg.Connection, cnvs_idt_id: str, user_id: int, title: str) -> asyncpg.Record | None:
    return await conn.fetchrow(RENAME_SQL, cnvs_idt_id, user_id, title)


async def soft_delete(conn: asyncpg.Connection, cnvs_idt_id: str, user_id: int) -> bool:
    return await conn.fetchval(SOFT_DELETE_SQL, cnvs_idt_id, user_id) is not None
