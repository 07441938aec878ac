"""Request and response bodies of /api/v1/documents, and the sources chat answers carry."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

STATUS_PROCESSING = "processing"
STATUS_READY = "ready"
STATUS_FAILED = "failed"


class DocumentOut(BaseModel):
    document_id: str
    filename: str
    content_type: str = Field(description="What the content is (sniffed), not what the client said.")
    size_bytes: int
    status: str = Field(description="processing, ready or failed.")
    chunks: int = Field(description="Chunks indexed (0 until ready).")
    error: str | None = Field(description="Why it failed, or what to do (e.g. reindex); null otherwise.")
    created_at: datetime


class DocumentList(BaseModel):
    items: list[DocumentOut]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last page.")


class DocumentDeleted(BaseModel):
    document_id: str
    deleted: bool


class Source(BaseModel):
    """A chunk that was put into the LLM's prompt, numbered there [1], [2], ... in this order."""

    document_id: str
    filename: str
    chunk_index: int
    score: float
    text: str
