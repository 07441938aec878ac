"""Request and response bodies of /api/v1/chat."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StrictBool, field_validator

from admin_api.core.text import StoredText
from admin_api.documents.schemas import Source

MAX_DOCUMENT_IDS = 50
DocumentId = Annotated[StoredText, Field(min_length=1, max_length=64)]


class ChatSendRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    cnvs_idt_id: StoredText = Field(default="", max_length=64, description="Conversation id; empty starts a new conversation.")
    # The upper bound is MAX_MESSAGE_CHARS (configurable), checked in the router against the settings.
    message: StoredText = Field(min_length=1, description="The user's message.")
    stream: StrictBool = Field(default=False, description="Answer as text/event-stream.")
    temperature: float | None = Field(default=None, ge=0, le=2, description="Sampling temperature, 0..2.")
    use_documents: StrictBool = Field(default=False, description="Answer from all of the caller's ready documents.")
    document_ids: list[DocumentId] | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_DOCUMENT_IDS,
        description="Answer from these documents only (the caller's; another's is 404).",
    )

    @property
    def wants_documents(self) -> bool:
        return self.use_documents or self.document_ids is not None

    @field_validator("message")
    @classmethod
    def message_must_not_be_blank(cls, message: str) -> str:
        if not message.strip():
            raise ValueError("message must not be blank")
        return message

    def fingerprint_fields(self) -> dict:
        """What makes two sends 'the same request' for Idempotency-Key."""
        return self.model_dump(mode="json")


class TokenUsage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ChatSendResponse(BaseModel):
    cnvs_idt_id: str
    user_message_id: str
    message_id: str = Field(description="The assistant message's id.")
    answer: str
    created_at: datetime
    usage: TokenUsage | None = None
    sources: list[Source] = Field(
        default_factory=list, description="The document chunks given to the LLM, numbered [1], [2], ... in this order."
    )


class ChatErrorResponse(BaseModel):
    """An LLM failure: the user's message is stored; retry with the same cnvs_idt_id."""

    detail: str
    cnvs_idt_id: str
    user_message_id: str
