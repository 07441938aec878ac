"""History use cases. A conversation that is not the caller's, or is deleted, is simply not found
(admin_api.conversations)."""

from __future__ import annotations

import json

import asyncpg

from admin_api import conversations
from admin_api.conversations import ConversationNotFound
from admin_api.history import repository
from admin_api.history.cursor import decode_cursor, encode_cursor
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

    async def detail(self, user_id: int, cnvs_idt_id: str) -> ConversationDetail:
        async with self.pool.acquire() as conn:
            row = await conversations.find_active(conn, cnvs_idt_id, user_id)
            if row is None:
                raise ConversationNotFound(cnvs_idt_id)
            messages = await repository.list_messages(conn, cnvs_idt_id)
        return ConversationDetail(
            **_summary(row).model_dump(),
            messages=[
                MessageOut(
                    message_id=m["MSG_IDT_ID"],
                    role=m["ROLE_CD"],
                    content=m["MSG_CN"],
                    status=m["STTS_CD"],
                    reg_dt=m["REG_DT"],
                    sources=json.loads(m["SRC_JSON"]) if m["SRC_JSON"] is not None else None,
                )
                for m in messages
            ],
        )

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
