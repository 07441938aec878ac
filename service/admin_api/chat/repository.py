"""SQL for conversations and messages (asyncpg; the caller owns the connection and transaction).
Which conversations a user may write to: admin_api.conversations.

A turn's two writes (its user message before the LLM is asked, its answer after) are one statement each: a
statement is atomic like a transaction, and costs one round trip instead of five (BEGIN, 2-3 statements, COMMIT).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

import asyncpg

ROLE_USER = "user"
ROLE_ASSISTANT = "assistant"
STATUS_COMPLETE = "complete"
STATUS_FAILED = "failed"


@dataclass(frozen=True)
class StoredMessage:
    msg_idt_id: str
    created_at: datetime


@dataclass(frozen=True)
class StartedTurn:
    found: bool  # False: no such active conversation of the user's (nothing was stored)
    history: list[tuple[str, str]]  # (role, content) of its last complete messages, oldest first


# A new conversation and its first message (still 'failed': it becomes 'complete' with its answer).
START_CONVERSATION_SQL = """
WITH conversation AS (
    INSERT INTO "USR_CNVS_SMRY" ("CNVS_IDT_ID", "USR_ID", "CNVS_TTL") VALUES ($1, $2, $3)
    RETURNING "CNVS_IDT_ID"
)
INSERT INTO "CNVS_MSG" ("MSG_IDT_ID", "CNVS_IDT_ID", "ROLE_CD", "MSG_CN", "STTS_CD")
SELECT $4, "CNVS_IDT_ID", 'user', $5, 'failed' FROM conversation
"""

# In the user's active conversation: its recent complete messages (read before this one is stored, as the
# statement sees the data as of its start) and the new message, stored only if the conversation is theirs.
CONTINUE_CONVERSATION_SQL = """
WITH conversation AS (
    SELECT "CNVS_IDT_ID" FROM "USR_CNVS_SMRY" WHERE "CNVS_IDT_ID" = $1 AND "USR_ID" = $2 AND "USE_YN" = 'Y'
), stored AS (
    INSERT INTO "CNVS_MSG" ("MSG_IDT_ID", "CNVS_IDT_ID", "ROLE_CD", "MSG_CN", "STTS_CD")
    SELECT $3, "CNVS_IDT_ID", 'user', $4, 'failed' FROM conversation
    RETURNING 1
), recent AS (
    SELECT "MSG_ID", "ROLE_CD", "MSG_CN" FROM "CNVS_MSG"
    WHERE "CNVS_IDT_ID" = $1 AND "STTS_CD" = 'complete' AND EXISTS (SELECT 1 FROM conversation)
    ORDER BY "MSG_ID" DESC LIMIT $5
)
SELECT EXISTS (SELECT 1 FROM stored) AS found,
       ARRAY(SELECT "ROLE_CD" FROM recent ORDER BY "MSG_ID") AS roles,
       ARRAY(SELECT "MSG_CN" FROM recent ORDER BY "MSG_ID") AS contents
"""

# The answer, its user message 'complete', and the conversation's last activity.
RECORD_ANSWER_SQL = """
WITH answered AS (
    UPDATE "CNVS_MSG" SET "STTS_CD" = 'complete' WHERE "MSG_IDT_ID" = $3
), touched AS (
    UPDATE "USR_CNVS_SMRY" SET "UPD_DT" = now() WHERE "CNVS_IDT_ID" = $2
)
INSERT INTO "CNVS_MSG" ("MSG_IDT_ID", "CNVS_IDT_ID", "ROLE_CD", "MSG_CN", "STTS_CD", "SRC_JSON")
VALUES ($1, $2, 'assistant', $4, 'complete', $5::jsonb)
RETURNING "REG_DT"
"""


async def start_new_conversation(
    conn: asyncpg.Connection | asyncpg.Pool, *, cnvs_idt_id: str, user_id: int, title: str, msg_idt_id: str, content: str
) -> StartedTurn:
    await conn.execute(START_CONVERSATION_SQL, cnvs_idt_id, user_id, title, msg_idt_id, content)
    return StartedTurn(found=True, history=[])


async def continue_conversation(
    conn: asyncpg.Connection | asyncpg.Pool,
    *,
    cnvs_idt_id: str,
    user_id: int,
    msg_idt_id: str,
    content: str,
    history_limit: int,
) -> StartedTurn:
    row = await conn.fetchrow(CONTINUE_CONVERSATION_SQL, cnvs_idt_id, user_id, msg_idt_id, content, history_limit)
    return StartedTurn(found=row["found"], history=list(zip(row["roles"], row["contents"])))


async def record_answer(
    conn: asyncpg.Connection | asyncpg.Pool,
    *,
    msg_idt_id: str,
    cnvs_idt_id: str,
    user_msg_idt_id: str,
    content: str,
    sources: list[dict] | None,
) -> StoredMessage:
    created_at = await conn.fetchval(
        RECORD_ANSWER_SQL,
        msg_idt_id,
        cnvs_idt_id,
        user_msg_idt_id,
        content,
        json.dumps(sources) if sources is not None else None,
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
