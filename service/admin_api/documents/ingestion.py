"""Ingestion off the request path: workers turn an uploaded document into indexed chunks.

The state is in PostgreSQL ("USR_DOC"), so it survives restarts and is shared by replicas:
- A worker claims the oldest document in 'processing' that nobody holds, with `FOR UPDATE SKIP LOCKED`
  (two workers never take the same one) and a lease it renews as it goes. A worker that crashed
  leaves its lease to run out; then another takes the document again (up to INGESTION_MAX_ATTEMPTS).
- Every write goes by the lease token: a document deleted meanwhile (its row gone) or taken over is
  never marked ready by a stale worker, which removes the vectors it added instead.
- A bad file fails for good with the reason; a backing service down (embeddings, storage, index) is
  retried later with back-off, and after the last attempt the document fails saying which one.
- Uploads wake the workers of this process; those of other replicas find the work by polling.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Awaitable, Callable

import anyio
import asyncpg

from admin_api.core.errors import is_unavailable
from admin_api.documents import index as vector_index
from admin_api.documents import repository
from admin_api.documents.chunking import Chunker
from admin_api.documents.embeddings import Embedder, EmbeddingsUnavailable
from admin_api.documents.extraction import ExtractionFailed, Limits, extract
from admin_api.documents.index import IndexUnavailable, VectorIndex
from admin_api.documents.storage import DocumentStore, OriginalMissing, StorageUnavailable

log = logging.getLogger(__name__)

RETRY_BASE_SECONDS = 5.0
RETRY_MAX_SECONDS = 300.0
PASSING_FAILURES = (EmbeddingsUnavailable, StorageUnavailable, IndexUnavailable)
GAVE_UP = {
    EmbeddingsUnavailable: "The embedding model was unavailable; delete the document and upload it again later.",
    StorageUnavailable: "The file storage was unavailable; delete the document and upload it again later.",
    IndexUnavailable: "The document index was unavailable; delete the document and upload it again later.",
}


class LeaseLost(Exception):
    """The document was deleted, or another worker took it over: stop, keep nothing."""


class IngestionWorkers:
    def __init__(
        self,
        *,
        pool: asyncpg.Pool,
        store: DocumentStore,
        embedder: Embedder,
        index: VectorIndex,
        chunker: Chunker,
        limits: Limits,
        workers: int,
        lease_seconds: float,
        poll_seconds: float,
        max_attempts: int,
    ) -> None:
        self._pool = pool
        self._store = store
        self._embedder = embedder
        self._index = index
        self._chunker = chunker
        self._limits = limits
        self._count = workers
        self._lease_seconds = lease_seconds
        self._poll_seconds = poll_seconds
        self._max_attempts = max_attempts
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task] = []
        self._current: dict[str, asyncio.Task] = {}  # document id -> the task ingesting it here
        self._cpu = anyio.CapacityLimiter(max(1, workers))  # extraction and chunking threads

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._run(), name=f"ingestion-{n}") for n in range(self._count)]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    def wake(self) -> None:
        self._wake.set()

    async def cancel(self, doc_idt_id: str) -> None:
        """Stop ingesting this document here now (it is being deleted); other replicas notice by their lease."""
        task = self._current.get(doc_idt_id)
        if task is not None and not task.done():
            task.cancel()
            await asyncio.wait({task})

    async def _run(self) -> None:
        while True:
            try:
                worked = await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception as error:  # a database outage, say: wait and try again
                if is_unavailable(error):
                    log.warning("ingestion: database unavailable", extra={"error_type": type(error).__name__})
                else:
                    log.exception("ingestion: unexpected error")
                worked = False
            if not worked:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self._poll_seconds)

    async def run_once(self) -> bool:
        """Claim and process one document; False when there was none."""
        token = secrets.token_hex(16)
        async with self._pool.acquire() as conn:
            row = await repository.claim(conn, token, self._lease_seconds)
        if row is None:
            return False
        doc_idt_id = row["DOC_IDT_ID"]
        task = asyncio.create_task(self._process(row, token))
        self._current[doc_idt_id] = task
        try:
            await asyncio.shield(task)  # our own cancellation (shutdown) reaches the task below
        except asyncio.CancelledError:
            if not task.done():  # shutting down: give the document back for another worker
                task.cancel()
                await asyncio.wait({task})
                await _shielded(lambda: self._release(doc_idt_id, token))
                raise
            log.info("ingestion cancelled: document deleted", extra={"document_id": doc_idt_id})
        finally:
            self._current.pop(doc_idt_id, None)
        return True

    async def _release(self, doc_idt_id: str, token: str) -> None:
        async with self._pool.acquire() as conn:
            await repository.release(conn, doc_idt_id, token)

    async def _process(self, row: asyncpg.Record, token: str) -> None:
        doc_idt_id, user_id = row["DOC_IDT_ID"], row["USR_ID"]
        if row["ATTEMPTS"] > self._max_attempts:
            await self._fail(doc_idt_id, token, "Processing this document stopped several times; it was given up.")
            return
        index_key: str | None = None
        try:
            data = await self._store.read_all(row["OBJ_KEY"])
            text = await anyio.to_thread.run_sync(extract, data, row["CNTN_TYPE"], self._limits, limiter=self._cpu)
            chunks = await anyio.to_thread.run_sync(self._chunker.split, text, limiter=self._cpu)
            vectors: list[list[float]] = []
            batch = self._embedder.batch_size
            for start in range(0, len(chunks), batch):
                vectors += await self._embedder.embed(chunks[start : start + batch])
                await self._renew(doc_idt_id, token)
            index_key = vector_index.key(self._embedder.model, len(vectors[0]))
            for stale in {row["IDX_KEY"], index_key} - {None}:  # an earlier attempt's, or another model's
                await self._index.remove(stale, user_id, doc_idt_id)
            await self._index.add(index_key, user_id, doc_idt_id, chunks, vectors)
            async with self._pool.acquire() as conn:
                ready = await repository.mark_ready(conn, doc_idt_id, token, len(chunks), index_key)
            if not ready:
                raise LeaseLost()
            log.info("document ready", extra={"document_id": doc_idt_id, "chunks": len(chunks)})
        except ExtractionFailed as failure:
            await self._fail(doc_idt_id, token, failure.reason)
        except OriginalMissing:
            await self._fail(doc_idt_id, token, "The stored file is missing; delete the document and upload it again.")
        except PASSING_FAILURES as error:
            await self._passing_failure(row, token, error)
        except LeaseLost:
            await self._discard(index_key, user_id, doc_idt_id)
        except asyncio.CancelledError:
            await _shielded(lambda: self._discard(index_key, user_id, doc_idt_id))
            raise

    async def _renew(self, doc_idt_id: str, token: str) -> None:
        async with self._pool.acquire() as conn:
            if not await repository.renew(conn, doc_idt_id, token, self._lease_seconds):
                raise LeaseLost()

    async def _fail(self, doc_idt_id: str, token: str, reason: str) -> None:
        async with self._pool.acquire() as conn:
            await repository.mark_failed(conn, doc_idt_id, token, reason)
        log.info("document failed", extra={"document_id": doc_idt_id, "reason": reason})

    async def _passing_failure(self, row: asyncpg.Record, token: str, error: Exception) -> None:
        doc_idt_id = row["DOC_IDT_ID"]
        if row["ATTEMPTS"] >= self._max_attempts:
            await self._fail(doc_idt_id, token, GAVE_UP[type(error)])
            return
        delay = min(RETRY_MAX_SECONDS, RETRY_BASE_SECONDS * 2 ** (row["ATTEMPTS"] - 1))
        async with self._pool.acquire() as conn:
            await repository.retry_later(conn, doc_idt_id, token, delay)
        log.info("document retried later", extra={"document_id": doc_idt_id, "delay_seconds": delay})

    async def _discard(self, index_key: str | None, user_id: int, doc_idt_id: str) -> None:
        """The document was deleted while we worked on it: remove what we may have indexed (but not if it
        still exists: then another worker has taken it over, and the points are its)."""
        async with self._pool.acquire() as conn:
            if await repository.exists(conn, doc_idt_id):
                return
        key = index_key or (
            vector_index.key(self._embedder.model, self._embedder.dimensions) if self._embedder.dimensions else None
        )
        if key is not None:
            await self._index.remove(key, user_id, doc_idt_id)


async def _shielded(action: Callable[[], Awaitable[None]], timeout: float = 10.0) -> None:
    with anyio.CancelScope(shield=True), anyio.move_on_after(timeout):
        try:
            await action()
        except Exception as error:
            log.warning("ingestion cleanup failed", extra={"error_type": type(error).__name__})
