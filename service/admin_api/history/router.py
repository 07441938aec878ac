"""/api/v1/history: POST-only, JSON bodies (the guide's shape).

Another user's, a deleted or an unknown conversation: the service raises ConversationNotFound,
answered 404 by the app's exception handler (core.errors)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.exceptions import RequestValidationError

from admin_api.auth.dependencies import AuthenticatedUser
from admin_api.core.deps import PoolDep, SettingsDep
from admin_api.core.errors import JSON_WRITE_ERRORS, SESSION_ERRORS
from admin_api.history.schemas import (
    ConversationDetail,
    ConversationDetailRequest,
    ConversationRef,
    ConversationSummary,
    DeleteResponse,
    HistoryListRequest,
    HistoryListResponse,
    RenameRequest,
)
from admin_api.history.service import HistoryService, InvalidCursor

router = APIRouter(
    prefix="/api/v1/history", tags=["history"], responses={**JSON_WRITE_ERRORS, **SESSION_ERRORS}
)

NOT_FOUND_RESPONSE = {404: {"description": "Unknown conversation, or not the caller's."}}


async def get_history_service(pool: PoolDep) -> HistoryService:
    return HistoryService(pool)


HistoryServiceDep = Annotated[HistoryService, Depends(get_history_service)]


@router.post("/list", response_model=HistoryListResponse)
async def list_conversations(
    body: HistoryListRequest,
    user: AuthenticatedUser,
    service: HistoryServiceDep,
) -> HistoryListResponse:
    """The caller's conversations, newest first."""
    return await service.list_page(user.id, page=body.page, page_size=body.page_size, cursor=body.cursor)


@router.post("/detail", response_model=ConversationDetail, responses=NOT_FOUND_RESPONSE)
async def conversation_detail(
    body: ConversationDetailRequest,
    user: AuthenticatedUser,
    service: HistoryServiceDep,
    settings: SettingsDep,
) -> ConversationDetail:
    """One conversation with a page of its messages (oldest first within the page): the newest `limit`
    messages, then, with `cursor` = `next_cursor`, the ones before them, until `next_cursor` is null."""
    largest = settings.history_messages_max_page_size
    if body.limit is not None and body.limit > largest:  # the schema's own 422, with the configured bound
        raise RequestValidationError([{"loc": ("body", "limit"), "msg": f"Input should be less than or equal to "
                                       f"{largest}", "type": "less_than_equal", "ctx": {"le": largest}}])
    limit = body.limit or settings.history_messages_page_size
    try:
        return await service.detail(user.id, body.cnvs_idt_id, limit=limit, cursor=body.cursor)
    except InvalidCursor as error:
        # The same 422 as a cursor that does not decode (the schema's validator).
        raise RequestValidationError(
            [{"loc": ("body", "cursor"), "msg": f"Value error, {error}", "type": "value_error"}]
        ) from None


@router.post("/rename", response_model=ConversationSummary, responses=NOT_FOUND_RESPONSE)
async def rename_conversation(
    body: RenameRequest,
    user: AuthenticatedUser,
    service: HistoryServiceDep,
) -> ConversationSummary:
    return await service.rename(user.id, body.cnvs_idt_id, body.title)


@router.post("/delete", response_model=DeleteResponse, responses=NOT_FOUND_RESPONSE)
async def delete_conversation(
    body: ConversationRef,
    user: AuthenticatedUser,
    service: HistoryServiceDep,
) -> DeleteResponse:
    """Soft delete: the conversation is hidden ("USE_YN" = 'N'), not erased."""
    await service.delete(user.id, body.cnvs_idt_id)
    return DeleteResponse(cnvs_idt_id=body.cnvs_idt_id, deleted=True)
