"""History use cases. A conversation that is not the caller's, or is deleted, is simply not found
(admin_api.conversations)."""

from __future__ import annotations

import json

import asyncpg

from admin_api import conversations
from admin_api.conversations import ConversationNotFound
from admin_api.history import repository
from admin_api.history.cursor import INVALID, decode_cursor, encode_cursor
from admin_api.history.schemas import (
    ConversationDetail,
    ConversationSummary,
    HistoryListResponse,
    MessageOut,
)


def _summary(row: asyncpg.Record) -> ConversationSummary:
    return ConversationSummary(
        cnvs_idt_id=row["CNVS_IDT_ID"], title=row["CNVS_TTL"], reg_dt=row["REG_DT"], upd_dt=row["UPD_DT"]
    )


def _message(row: asyncpg.Record) -> MessageOut:
    return MessageOut(
        message_id=row["MSG_IDT_ID"],
        role=row["ROLE_CD"],
        content=row["MSG_CN"],
        status=row["STTS_CD"],
        reg_dt=row["REG_DT"],
        sources=json.loads(row["SRC_JSON"]) if row["SRC_JSON"] is not None else None,
    )


class InvalidCursor(ValueError):
    """A cursor that decodes but does not point into this conversation: a 422, like one that does not decode."""


class HistoryService:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def list_page(self, user_id: int, *, page: int, page_size: int, cursor: str | None) -> HistoryListResponse:
        # One row more than asked tells whether a next page exists without a second query.
        async with self.pool.acquire() as conn:
            if cursor is not None:
                reg_dt, cnvs_idt_id = decode_cursor(cursor)
                rows = await repository.list_after_cursor(conn, user_id, page_size + 1, reg_dt, cnvs_idt_id)
            else:
                rows = await repository.list_by_offset(conn, user_id, page_size + 1, (page - 1) * page_size)
            total = await repository.count_active(conn, user_id)
        has_more = len(rows) > page_size
        rows = rows[:page_size]
        next_cursor = encode_cursor(rows[-1]["REG_DT"], rows[-1]["CNVS_IDT_ID"]) if has_more else None
        return HistoryListResponse(
            items=[_summary(row) for row in rows],
            total=total,
            page=page,
            page_size=page_size,
            next_cursor=next_cursor,
        )

    async def detail(self, user_id: int, cnvs_idt_id: str, *, limit: int, cursor: str | None) -> ConversationDetail:
        """The newest `limit` messages, or with `cursor` (the oldest message of the page before) the `limit`
        stored just before it. Only the cursor's message id is used: it places the page, in stored order."""
        async with self.pool.acquire() as conn:
            row = await conversations.find_active(conn, cnvs_idt_id, user_id)
            if row is None:
                raise ConversationNotFound(cnvs_idt_id)
            if cursor is None:
                messages = await repository.latest_messages(conn, cnvs_idt_id, limit + 1)
            else:
                _, msg_idt_id = decode_cursor(cursor)
                position = await repository.message_position(conn, cnvs_idt_id, msg_idt_id)
                if position is None:  # well formed, but not a message of this conversation
                    raise InvalidCursor(INVALID)
                messages = await repository.messages_before(conn, cnvs_idt_id, position, limit + 1)
        has_more = len(messages) > limit
        page = messages[:limit][::-1]  # read newest first; a page lists them oldest first
        next_cursor = encode_cursor(page[0]["REG_DT"], page[0]["MSG_IDT_ID"]) if has_more else None
        return ConversationDetail(**_summary(row).model_dump(), messages=[_message(m) for m in page],
                                  next_cursor=next_cursor)

    async def rename(self, user_id: int, cnvs_idt_id: str, title: str) -> ConversationSummary:
        async with self.pool.acquire() as conn:
            row = await repository.rename(conn, cnvs_idt_id, user_id, title)
        if row is None:
            raise ConversationNotFound(cnvs_idt_id)
        return _summary(row)

    async def delete(self, user_id: int, cnvs_idt_id: str) -> None:
        async with self.pool.acquire() as conn:
            deleted = await repository.soft_delete(conn, cnvs_idt_id, user_id)
        if not deleted:
            raise ConversationNotFound(cnvs_idt_id)
