"""Documents use cases (upload, list, get, content, delete) and the retrieval chat uses.

Another user's document, or an unknown one, is DocumentNotFound (404) everywhere.
"""

from __future__ import annotations

import logging
import re
import unicodedata
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import BinaryIO

import anyio
import asyncpg

from admin_api.core.errors import NotFound
from admin_api.documents import index as vector_index
from admin_api.documents import repository
from admin_api.documents.embeddings import Embedder, EmbeddingsUnavailable
from admin_api.documents.extraction import sniff
from admin_api.documents.index import IndexUnavailable, VectorIndex
from admin_api.documents.ingestion import IngestionWorkers
from admin_api.documents.schemas import STATUS_READY, DocumentList, DocumentOut, Source
from admin_api.documents.storage import DocumentStore, StorageUnavailable, object_key
from admin_api.history.cursor import decode_cursor, encode_cursor

log = logging.getLogger(__name__)

FILENAME_MAX = 255
RETRIEVAL_CANDIDATES = 2  # ask the index for this many times top_k: some hits may be of documents just deleted
REINDEX_NEEDED = (
    "Some of your documents were indexed with another embedding model than the one configured now; "
    "an administrator must run `admin-api reindex` to rebuild them from their originals."
)


class DocumentNotFound(NotFound):
    detail = "Document not found."


class DocumentsError(Exception):
    """A failure of the documents machinery that the client can do nothing about but wait (or tell an admin)."""

    def __init__(self, status_code: int, detail: str) -> None:
        super().__init__(detail)
        self.status_code = status_code
        self.detail = detail


class DocumentTooLarge(Exception):
    pass


def unavailable(error: Exception) -> DocumentsError:
    return DocumentsError(503, getattr(error, "detail", "A backing service is temporarily unavailable; retry shortly."))


BACKING_FAILURES = (EmbeddingsUnavailable, StorageUnavailable, IndexUnavailable)


def safe_filename(name: str | None) -> str:
    """The last path part of the client's name, without control characters, at most 255 characters."""
    name = unicodedata.normalize("NFC", name or "")
    name = re.split(r"[\\/]", name)[-1]
    name = "".join(ch for ch in name if unicodedata.category(ch)[0] != "C").strip().strip(".")
    return (name or "document")[:FILENAME_MAX]


def document_out(row: asyncpg.Record, current_model: str) -> DocumentOut:
    error = row["ERR_MSG"]
    if row["STTS_CD"] == STATUS_READY and row["IDX_KEY"] and not _same_model(row["IDX_KEY"], current_model):
        error = REINDEX_NEEDED
    return DocumentOut(
        document_id=row["DOC_IDT_ID"],
        filename=row["FILE_NM"],
        content_type=row["CNTN_TYPE"],
        size_bytes=row["FILE_SZ"],
        status=row["STTS_CD"],
        chunks=row["CHNK_CNT"],
        error=error,
        created_at=row["REG_DT"],
    )


def _same_model(index_key: str, model: str) -> bool:
    return index_key.rsplit("_", 1)[0] == vector_index.key(model, 0).rsplit("_", 1)[0]


@dataclass
class DocumentContent:
    document: DocumentOut
    chunks: AsyncIterator[bytes]


class DocumentService:
    def __init__(
        self,
        *,
        pool: asyncpg.Pool,
        store: DocumentStore,
        index: VectorIndex,
        embedder: Embedder,
        workers: IngestionWorkers,
        max_upload_bytes: int,
    ) -> None:
        self._pool = pool
        self._store = store
        self._index = index
        self._embedder = embedder
        self._workers = workers
        self._max_upload_bytes = max_upload_bytes

    def _out(self, row: asyncpg.Record) -> DocumentOut:
        return document_out(row, self._embedder.model)

    async def upload(self, user_id: int, file: BinaryIO, size: int, filename: str | None) -> DocumentOut:
        if size > self._max_upload_bytes:
            raise DocumentTooLarge()
        if size == 0:
            raise DocumentsError(422, "The file is empty.")
        content_type = await anyio.to_thread.run_sync(sniff, file)  # UnsupportedType: 415
        doc_idt_id = str(uuid.uuid4())
        key = object_key(user_id, doc_idt_id)
        try:
            await self._store.put(key, file, size, content_type)
        except StorageUnavailable as error:
            raise unavailable(error) from None
        try:
            async with self._pool.acquire() as conn:
                row = await repository.insert(
                    conn,
                    doc_idt_id=doc_idt_id,
                    user_id=user_id,
                    filename=safe_filename(filename),
                    content_type=content_type,
                    size=size,
                    object_key=key,
                )
        except BaseException:
            with anyio.CancelScope(shield=True):
                try:
                    await self._store.remove(key)
                except StorageUnavailable:
                    log.warning("an upload's original could not be removed after a failure")
            raise
        self._workers.wake()
        return self._out(row)

    async def list_page(self, user_id: int, *, limit: int, cursor: str | None) -> DocumentList:
        after = decode_cursor(cursor) if cursor else None
        async with self._pool.acquire() as conn:
            rows = await repository.list_page(conn, user_id, limit + 1, after)
        more = len(rows) > limit
        rows = rows[:limit]
        next_cursor = encode_cursor(rows[-1]["REG_DT"], rows[-1]["DOC_IDT_ID"]) if more else None
        return DocumentList(items=[self._out(row) for row in rows], next_cursor=next_cursor)

    async def get(self, user_id: int, doc_idt_id: str) -> DocumentOut:
        async with self._pool.acquire() as conn:
            row = await repository.find(conn, doc_idt_id, user_id)
        if row is None:
            raise DocumentNotFound()
        return self._out(row)

    async def content(self, user_id: int, doc_idt_id: str) -> DocumentContent:
        async with self._pool.acquire() as conn:
            row = await repository.find(conn, doc_idt_id, user_id)
        if row is None:
            raise DocumentNotFound()
        try:
            chunks = await self._store.open(row["OBJ_KEY"])
        except StorageUnavailable as error:
            raise unavailable(error) from None
        return DocumentContent(self._out(row), chunks)

    async def delete(self, user_id: int, doc_idt_id: str) -> None:
        """Original, vectors and row, or nothing (503, retry): the row stays locked meanwhile, so a worker
        finishing the document waits, then finds it gone and removes what it added."""
        async with self._pool.acquire() as conn:
            if await repository.find(conn, doc_idt_id, user_id) is None:
                raise DocumentNotFound()
        await self._workers.cancel(doc_idt_id)
        try:
            async with self._pool.acquire() as conn, conn.transaction():
                row = await repository.lock_for_delete(conn, doc_idt_id, user_id)
                if row is None:
                    raise DocumentNotFound()
                for key in self._index_keys(row):
                    await self._index.remove(key, user_id, doc_idt_id)
                await self._store.remove(row["OBJ_KEY"])
                await repository.delete(conn, doc_idt_id, user_id)
        except BACKING_FAILURES as error:
            raise unavailable(error) from None
        log.info("document deleted", extra={"document_id": doc_idt_id})

    def _index_keys(self, row: asyncpg.Record) -> set[str]:
        keys = {row["IDX_KEY"]} if row["IDX_KEY"] else set()
        if self._embedder.dimensions:  # where a worker may be adding it right now
            keys.add(vector_index.key(self._embedder.model, self._embedder.dimensions))
        return keys


class Retriever:
    """The chunks of the caller's ready documents nearest to a question, for the prompt."""

    def __init__(
        self, *, pool: asyncpg.Pool, index: VectorIndex, embedder: Embedder, top_k: int, hybrid: bool
    ) -> None:
        self._pool = pool
        self._index = index
        self._embedder = embedder
        self._top_k = top_k
        self._hybrid = hybrid

    async def check_owned(self, user_id: int, document_ids: list[str]) -> None:
        async with self._pool.acquire() as conn:
            owned = await repository.owned_ids(conn, document_ids, user_id)
        if owned != set(document_ids):
            raise DocumentNotFound()

    async def retrieve(self, user_id: int, query: str, document_ids: list[str] | None) -> list[Source]:
        if document_ids is not None:
            await self.check_owned(user_id, document_ids)
        async with self._pool.acquire() as conn:
            indexed_in = await repository.ready_index_keys(conn, user_id, document_ids)
        if not indexed_in:
            return []  # nothing ready to search: no need to ask the embedding model
        try:
            vector = await self._embedder.embed_one(query)
            key = vector_index.key(self._embedder.model, len(vector))
            if indexed_in - {key}:
                raise DocumentsError(409, REINDEX_NEEDED)
            hits = await self._index.search(
                key,
                user_id,
                vector=vector,
                text=query,
                top_k=self._top_k * RETRIEVAL_CANDIDATES,
                document_ids=document_ids,
                hybrid=self._hybrid,
            )
        except (EmbeddingsUnavailable, IndexUnavailable) as error:
            raise unavailable(error) from None
        async with self._pool.acquire() as conn:
            ready = await repository.ready_documents(conn, list({hit.document_id for hit in hits}), user_id)
        return [
            Source(
                document_id=hit.document_id,
                filename=ready[hit.document_id]["FILE_NM"],
                chunk_index=hit.chunk_index,
                score=hit.score,
                text=hit.text,
            )
            for hit in hits
            if hit.document_id in ready and ready[hit.document_id]["IDX_KEY"] == key
        ][: self._top_k]
