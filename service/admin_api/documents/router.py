"""/api/v1/documents: upload (multipart, 202), list, get, content, delete. Another user's document is 404."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, status
from fastapi.responses import StreamingResponse
from pydantic import AfterValidator
from starlette.datastructures import UploadFile

from admin_api.auth.dependencies import AuthenticatedUser
from admin_api.core.deps import ResourcesDep
from admin_api.core.errors import SESSION_ERRORS, ErrorDetail
from admin_api.core.text import StoredText
from admin_api.documents.extraction import UnsupportedType
from admin_api.documents.schemas import DocumentDeleted, DocumentList, DocumentOut
from admin_api.documents.service import DocumentService, DocumentTooLarge
from admin_api.history.cursor import decode_cursor

PATH = "/api/v1/documents"
NOT_CONFIGURED = "Documents are not configured on this server (MINIO_*, EMBEDDING_MODEL_ENDPOINT, EMBEDDING_MODEL)."


def _errors(*codes: tuple[int, str]) -> dict:
    return {code: {"model": ErrorDetail, "description": text} for code, text in codes}


NOT_FOUND = _errors((404, "Unknown document, or not the caller's."))
UNAVAILABLE = _errors((503, "Documents are not configured, or a backing service is unavailable."))

router = APIRouter(prefix=PATH, tags=["documents"], responses={**SESSION_ERRORS, **UNAVAILABLE})

DocumentId = Annotated[StoredText, Path(min_length=1, max_length=64)]


async def get_document_service(user: AuthenticatedUser, resources: ResourcesDep) -> DocumentService:
    if resources.documents is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, NOT_CONFIGURED)
    return resources.documents.service()


DocumentServiceDep = Annotated[DocumentService, Depends(get_document_service)]

UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {"file": {"type": "string", "format": "binary"}},
                }
            }
        },
    }
}


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=DocumentOut,
    openapi_extra=UPLOAD_BODY,
    responses=_errors(
        (400, "Malformed multipart body."),
        (403, "Cross-site request refused."),
        (413, "The file is larger than MAX_UPLOAD_BYTES."),
        (415, "Not a supported type (plain text, Markdown, HTML, PDF, DOCX), judged by the content."),
        (422, "No `file` part, or an empty file."),
    ),
)
async def upload_document(request: Request, user: AuthenticatedUser, service: DocumentServiceDep) -> DocumentOut:
    """Store the file and queue it for ingestion: `status` goes `processing` → `ready` or `failed` (with `error`)."""
    if not request.headers.get("content-type", "").lower().startswith("multipart/form-data"):
        raise HTTPException(status.HTTP_415_UNSUPPORTED_MEDIA_TYPE, "Send the file as multipart/form-data.")
    # Parsed here, after the session check, not before the route as FastAPI's File() would.
    form = await request.form(max_files=1, max_fields=8)
    try:
        file = form.get("file")
        if not isinstance(file, UploadFile):
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "Send the file in a part named `file`.")
        try:
            return await service.upload(user.id, file.file, file.size or 0, file.filename)
        except DocumentTooLarge:
            raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, "The file is too large.") from None
        except UnsupportedType as error:
            raise HTTPException(status.HTTP_415_UNSUPPORTED_MEDIA_TYPE, error.detail) from None
    finally:
        await form.close()


def _valid_cursor(cursor: str | None) -> str | None:
    if cursor is not None:
        decode_cursor(cursor)  # ValueError: a 422 like any invalid parameter
    return cursor


@router.get("", response_model=DocumentList)
async def list_documents(
    user: AuthenticatedUser,
    service: DocumentServiceDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=256), AfterValidator(_valid_cursor)] = None,
) -> DocumentList:
    """The caller's documents, newest first; pass `next_cursor` back as `cursor` for the next page."""
    return await service.list_page(user.id, limit=limit, cursor=cursor)


@router.get("/{document_id}", response_model=DocumentOut, responses=NOT_FOUND)
async def get_document(document_id: DocumentId, user: AuthenticatedUser, service: DocumentServiceDep) -> DocumentOut:
    return await service.get(user.id, document_id)


@router.get(
    "/{document_id}/content",
    response_class=StreamingResponse,
    responses={200: {"content": {"application/octet-stream": {}}, "description": "The original bytes."}, **NOT_FOUND},
)
async def document_content(document_id: DocumentId, user: AuthenticatedUser, service: DocumentServiceDep):
    """The original file, as uploaded, always as an attachment (never rendered by the browser)."""
    content = await service.content(user.id, document_id)
    headers = {
        "Content-Disposition": content_disposition(content.document.filename),
        "Content-Length": str(content.document.size_bytes),
        # Even if a browser were made to render it: no scripts, no same-origin powers.
        "Content-Security-Policy": "default-src 'none'; sandbox",
    }
    return StreamingResponse(content.chunks, media_type=content.document.content_type, headers=headers)


def content_disposition(filename: str) -> str:
    """RFC 6266: an ASCII fallback that cannot break out of its quotes, and the exact name in filename*."""
    fallback = "".join(ch if 0x20 <= ord(ch) < 0x7F and ch not in '"\\;%' else "_" for ch in filename) or "document"
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"


@router.delete("/{document_id}", response_model=DocumentDeleted, responses=NOT_FOUND)
async def delete_document(
    document_id: DocumentId, user: AuthenticatedUser, service: DocumentServiceDep
) -> DocumentDeleted:
    """Remove the original, its vectors and its row; an ingestion in progress is stopped."""
    await service.delete(user.id, document_id)
    return DocumentDeleted(document_id=document_id, deleted=True)
