"""SQL for conversations and messages (asyncpg; the caller owns the connection and transaction).
Which conversations a user may write to: admin_api.conversations."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from admin_api.conversations import FIND_ACTIVE_SQL

ROLE_USER = "user"
ROLE_ASSISTANT = "assistant"
STATUS_COMPLETE = "complete"
STATUS_FAILED = "failed"


@dataclass(frozen=True)
class StoredMessage:
    msg_idt_id: str
    created_at: datetime


# A turn's writes are each one statement (one round trip, atomic without BEGIN/COMMIT): data-modifying CTEs
# run together, and the foreign key of a message to the conversation inserted beside it is checked at the
# statement's end.

START_NEW_CONVERSATION_SQL = """
WITH conversation AS (
    INSERT INTO "USR_CNVS_SMRY" ("CNVS_IDT_ID", "USR_ID", "CNVS_TTL") VALUES ($1, $2, $3)
)
INSERT INTO "CNVS_MSG" ("MSG_IDT_ID", "CNVS_IDT_ID", "ROLE_CD", "MSG_CN") VALUES ($4, $1, 'user', $5)
"""

# The user's message goes in only if the conversation is the caller's and active; the context is read from
# the statement's snapshot, so it never holds the message being added.
CONTINUE_CONVERSATION_SQL = f"""
WITH conversation AS ({FIND_ACTIVE_SQL}), added AS (
    INSERT INTO "CNVS_MSG" ("MSG_IDT_ID", "CNVS_IDT_ID", "ROLE_CD", "MSG_CN")
    SELECT $3, "CNVS_IDT_ID", 'user', $4 FROM conversation
    RETURNING 1
), recent AS (
    SELECT "MSG_ID", "ROLE_CD", "MSG_CN" FROM "CNVS_MSG"
    WHERE "CNVS_IDT_ID" = (SELECT "CNVS_IDT_ID" FROM conversation) AND "STTS_CD" = 'complete'
    ORDER BY "MSG_ID" DESC LIMIT $5
)
SELECT EXISTS (SELECT 1 FROM added) AS found,
       ARRAY(SELECT "ROLE_CD" FROM recent ORDER BY "MSG_ID") AS roles,
       ARRAY(SELECT "MSG_CN" FROM recent ORDER BY "MSG_ID") AS contents
"""

ADD_ANSWER_SQL = """
WITH touched AS (
    UPDATE "USR_CNVS_SMRY" SET "UPD_DT" = now() WHERE "CNVS_IDT_ID" = $2
)
INSERT INTO "CNVS_MSG" ("MSG_IDT_ID", "CNVS_IDT_ID", "ROLE_CD", "MSG_CN", "SRC_JSON")
VALUES ($1, $2, 'assistant', $3, $4::jsonb)
RETURNING "REG_DT"
"""


async def start_new_conversation(
    db: asyncpg.Pool | asyncpg.Connection, *, cnvs_idt_id: str, user_id: int, title: str, msg_idt_id: str, content: str
) -> None:
    """Create the conversation with the user's first message in it."""
    await db.execute(START_NEW_CONVERSATION_SQL, cnvs_idt_id, user_id, title, msg_idt_id, content)


async def continue_conversation(
    db: asyncpg.Pool | asyncpg.Connection, *, cnvs_idt_id: str, user_id: int, msg_idt_id: str, content: str, limit: int
) -> list[tuple[str, str]] | None:
    """Add the user's message to their active conversation; returns the `limit` complete messages before it as
    (role, content), oldest first, or None (nothing added) when the conversation is not theirs or not active."""
    row = await db.fetchrow(CONTINUE_CONVERSATION_SQL, cnvs_idt_id, user_id, msg_idt_id, content, limit)
    if not row["found"]:
        return None
    return list(zip(row["roles"], row["contents"]))


async def add_answer(
    db: asyncpg.Pool | asyncpg.Connection,
    *,
    msg_idt_id: str,
    cnvs_idt_id: str,
    content: str,
    sources: list[dict] | None = None,
) -> StoredMessage:
    """The assistant's complete answer (with the document sources it was given), and the conversation marked
    as updated."""
    created_at = await db.fetchval(
        ADD_ANSWER_SQL, msg_idt_id, cnvs_idt_id, content, json.dumps(sources) if sources is not None else None
    )
    return StoredMessage(msg_idt_id=msg_idt_id, created_at=created_at)


async def add_message(
    conn: asyncpg.Connection,
    *,
    msg_idt_id: str,
    cnvs_idt_id: str,
    role: str,
    content: str,
    status: str = STATUS_COMPLETE,
    sources: list[dict] | None = None,
) -> StoredMessage:
    created_at = await conn.fetchval(
        'INSERT INTO "CNVS_MSG" ("MSG_IDT_ID", "CNVS_IDT_ID", "ROLE_CD", "MSG_CN", "STTS_CD", "SRC_JSON") '
        'VALUES ($1, $2, $3, $4, $5, $6::jsonb) RETURNING "REG_DT"',
        msg_idt_id,
        cnvs_idt_id,
        role,
        content,
        status,
        json.dumps(sources) if sources is not None else None,
    )
    return StoredMessage(msg_idt_id=msg_idt_id, created_at=created_at)


async def mark_message_failed(conn: asyncpg.Connection, *, msg_idt_id: str) -> None:
    await conn.execute('UPDATE "CNVS_MSG" SET "STTS_CD" = \'failed\' WHERE "MSG_IDT_ID" = $1', msg_idt_id)


async def touch_conversation(conn: asyncpg.Connection, *, cnvs_idt_id: str) -> None:
    await conn.execute('UPDATE "USR_CNVS_SMRY" SET "UPD_DT" = now() WHERE "CNVS_IDT_ID" = $1', cnvs_idt_id)
