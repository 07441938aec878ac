"""SQL for conversations and messages (asyncpg; the caller owns the connection and transaction).
Which conversations a user may write to: admin_api.conversations."""

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


async def create_conversation(conn: asyncpg.Connection, *, cnvs_idt_id: str, user_id: int, title: str) -> None:
    await conn.execute(
        'INSERT INTO "USR_CNVS_SMRY" ("CNVS_IDT_ID", "USR_ID", "CNVS_TTL") VALUES ($1, $2, $3)',
        cnvs_idt_id,
        user_id,
        title,
    )


async def recent_complete_messages(conn: asyncpg.Connection, *, cnvs_idt_id: str, limit: int) -> list[tuple[str, str]]:
    """The last `limit` complete messages as (role, content), oldest first."""
    rows = await conn.fetch(
        """
        SELECT "ROLE_CD", "MSG_CN" FROM (
            SELECT "MSG_ID", "ROLE_CD", "MSG_CN" FROM "CNVS_MSG"
            WHERE "CNVS_IDT_ID" = $1 AND "STTS_CD" = 'complete'
            ORDER BY "MSG_ID" DESC LIMIT $2
        ) AS recent ORDER BY "MSG_ID"
        """,
        cnvs_idt_id,
        limit,
    )
    return [(row["ROLE_CD"], row["MSG_CN"]) for row in rows]


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
