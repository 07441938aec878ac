"""Request and response bodies of /api/v1/history."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

from admin_api.core.text import StoredText
from admin_api.documents.schemas import Source
from admin_api.history.cursor import decode_cursor

MAX_PAGE = 1_000_000  # bounds OFFSET; deeper than this, use the cursor
# history/detail: a page of messages, not the whole conversation (one of 6,000 long messages was 49 MB).


def _decodes(cursor: str | None) -> str | None:
    if cursor is not None:
        decode_cursor(cursor)  # a ValueError here is a 422 naming the field
    return cursor


Cursor = Annotated[str | None, Field(max_length=256), AfterValidator(_decodes)]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class HistoryListRequest(_Request):
    page: int = Field(default=1, ge=1, le=MAX_PAGE, strict=True, description="1-based page (offset paging).")
    page_size: int = Field(default=20, ge=1, le=100, strict=True)
    cursor: Cursor = Field(
        default=None,
        description="`next_cursor` of the previous page: keyset paging, same cost at any depth. "
        "When given, `page` is only echoed back.",
    )


class ConversationRef(_Request):
    cnvs_idt_id: StoredText = Field(min_length=1, max_length=64)


class ConversationDetailRequest(ConversationRef):
    limit: int | None = Field(
        default=None, ge=1, strict=True,
        description="Messages per page: by default HISTORY_MESSAGES_PAGE_SIZE (100), at most "
        "HISTORY_MESSAGES_MAX_PAGE_SIZE (500).",
    )
    cursor: Cursor = Field(
        default=None,
        description="`next_cursor` of the previous page: the messages just before that page's first one. "
        "Without it, the newest page.",
    )


class RenameRequest(ConversationRef):
    title: StoredText = Field(min_length=1, max_length=200)

    @field_validator("title")
    @classmethod
    def _not_blank(cls, title: str) -> str:
        title = title.strip()
        if not title:
            raise ValueError("title must not be blank")
        return title


class ConversationSummary(BaseModel):
    cnvs_idt_id: str
    title: str
    reg_dt: datetime
    upd_dt: datetime


class HistoryListResponse(BaseModel):
    items: list[ConversationSummary]
    total: int
    page: int
    page_size: int
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last page.")


class MessageOut(BaseModel):
    message_id: str
    role: str
    content: str
    status: str
    reg_dt: datetime
    sources: list[Source] | None = Field(default=None, description="The document chunks this answer was given.")


class ConversationDetail(ConversationSummary):
    messages: list[MessageOut] = Field(
        description="One page, oldest first: the newest `limit` messages, or those before `cursor`."
    )
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the page of older messages; null when this page starts the conversation."
    )


class DeleteResponse(BaseModel):
    cnvs_idt_id: str
    deleted: bool
