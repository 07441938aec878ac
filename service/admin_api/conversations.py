"""What chat and history share about a conversation ("USR_CNVS_SMRY"): which ones a user may see.

A conversation is the caller's only while it is theirs and active ("USE_YN" = 'Y'); anything else,
unknown, deleted or another user's, is ConversationNotFound (404), all alike to the caller.
"""

from __future__ import annotations

import asyncpg

from admin_api.core.errors import NotFound

SUMMARY_COLUMNS = '"CNVS_IDT_ID", "CNVS_TTL", "REG_DT", "UPD_DT"'

FIND_ACTIVE_SQL = f"""
SELECT {SUMMARY_COLUMNS} FROM "USR_CNVS_SMRY"
WHERE "CNVS_IDT_ID" = $1 AND "USR_ID" = $2 AND "USE_YN" = 'Y'
"""


class ConversationNotFound(NotFound):
    detail = "Conversation not found."


async def find_active(conn: asyncpg.Connection, cnvs_idt_id: str, user_id: int) -> asyncpg.Record | None:
    """The caller's active conversation (its summary columns), or None."""
    return await conn.fetchrow(FIND_ACTIVE_SQL, cnvs_idt_id, user_id)
