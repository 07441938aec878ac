"""/api/v1/history: POST-only, JSON bodies (the guide's shape)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, status

from admin_api.auth.dependencies import AuthenticatedUser
from admin_api.core.deps import PoolDep
from admin_api.history.schemas import (
    ConversationDetail,
    ConversationRef,
    ConversationSummary,
    DeleteResponse,
    HistoryListRequest,
    HistoryListResponse,
    RenameRequest,
)
from admin_api.history.service import ConversationNotFound, HistoryService

router = APIRouter(prefix="/api/v1/history", tags=["history"])

NOT_FOUND = "Conversation not found."


async def history_service(pool: PoolDep) -> HistoryService:
    return HistoryService(pool)


History = Annotated[HistoryService, Depends(history_service)]


@router.post("/list", response_model=HistoryListResponse)
async def list_conversations(
    body: HistoryListRequest,
    user: AuthenticatedUser,
    service: History,
) -> HistoryListResponse:
    """The caller's conversations, newest first."""
    return await service.list_page(user.id, page=body.page, page_size=body.page_size, cursor=body.cursor)


@router.post("/detail", response_model=ConversationDetail)
async def conversation_detail(
    body: ConversationRef,
    user: AuthenticatedUser,
    service: History,
) -> ConversationDetail:
    """One conversation with its messages, oldest first."""
    try:
        return await service.detail(user.id, body.cnvs_idt_id)
    except ConversationNotFound:
        raise HTTPException(status.HTTP_404_NOT_FOUND, NOT_FOUND) from None


@router.post("/rename", response_model=ConversationSummary)
async def rename_conversation(
    body: RenameRequest,
    user: AuthenticatedUser,
    service: History,
) -> ConversationSummary:
    try:
        return await service.rename(user.id, body.cnvs_idt_id, body.title)
    except ConversationNotFound:
        raise HTTPException(status.HTTP_404_NOT_FOUND, NOT_FOUND) from None


@router.post("/delete", response_model=DeleteResponse)
async def delete_conversation(
    body: ConversationRef,
    user: AuthenticatedUser,
    service: History,
) -> DeleteResponse:
    """Soft delete: the conversation is hidden ("USE_YN" = 'N'), not erased."""
    try:
        await service.delete(user.id, body.cnvs_idt_id)
    except ConversationNotFound:
        raise HTTPException(status.HTTP_404_NOT_FOUND, NOT_FOUND) from None
    return DeleteResponse(cnvs_idt_id=body.cnvs_idt_id, deleted=True)
