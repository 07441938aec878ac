"""The documents machinery as the app holds it: built in the lifespan (main.py), None when not configured."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import asyncpg

from admin_api.documents.chunking import Chunker
from admin_api.documents.embeddings import Embedder
from admin_api.documents.extraction import Limits
from admin_api.documents.index import VectorIndex
from admin_api.documents.ingestion import IngestionWorkers
from admin_api.documents.service import DocumentService, Retriever
from admin_api.documents.storage import DocumentStore
from admin_api.settings import Settings

log = logging.getLogger(__name__)


def _secret(value) -> str | None:
    return value.get_secret_value() if value is not None else None


@dataclass
class Documents:
    settings: Settings
    pool: asyncpg.Pool
    store: DocumentStore
    embedder: Embedder
    index: VectorIndex
    workers: IngestionWorkers

    def service(self) -> DocumentService:
        return DocumentService(
            pool=self.pool,
            store=self.store,
            index=self.index,
            embedder=self.embedder,
            workers=self.workers,
            max_upload_bytes=self.settings.max_upload_bytes,
        )

    def retriever(self) -> Retriever:
        return Retriever(
            pool=self.pool,
            index=self.index,
            embedder=self.embedder,
            top_k=self.settings.retrieval_top_k,
            hybrid=self.settings.retrieval_mode == "hybrid",
        )

    async def close(self) -> None:
        await self.workers.stop()
        await self.embedder.close()
        await self.index.close()


def open_index(settings: Settings) -> VectorIndex:
    try:
        return VectorIndex(
            host=settings.qdrant_host,
            port=settings.qdrant_port,
            api_key=_secret(settings.qdrant_api_key),
            https=settings.qdrant_https,
            path=settings.qdrant_path,
        )
    except RuntimeError as error:  # the embedded store's lock: another process has it open
        raise RuntimeError(
            f"the embedded Qdrant store at QDRANT_PATH={settings.qdrant_path} is in use by another process; "
            "it serves one process only (set QDRANT_HOST for several)"
        ) from error


def open_documents(settings: Settings, pool: asyncpg.Pool) -> Documents | None:
    if not settings.documents_enabled:
        log.info("documents disabled: MINIO_*, EMBEDDING_MODEL_ENDPOINT and EMBEDDING_MODEL are not all set")
        return None
    store = DocumentStore(
        settings.minio_endpoint,
        _secret(settings.minio_access_key),
        _secret(settings.minio_secret_key),
        settings.minio_bucket,
        secure=settings.minio_secure,
        concurrency=settings.storage_concurrency,
    )
    embedder = Embedder(
        str(settings.embedding_model_endpoint),
        settings.embedding_model,
        api_key=_secret(settings.embedding_api_key),
        batch_size=settings.embedding_batch_size,
        timeout_seconds=settings.embedding_timeout_seconds,
        max_retries=settings.embedding_max_retries,
    )
    index = open_index(settings)
    workers = IngestionWorkers(
        pool=pool,
        store=store,
        embedder=embedder,
        index=index,
        chunker=Chunker(settings.chunk_tokens, settings.chunk_overlap_tokens, settings.chunk_tokenizer_file),
        limits=Limits(
            max_pages=settings.max_document_pages,
            max_unpacked_bytes=settings.max_unpacked_bytes,
            max_chars=settings.max_document_chars,
        ),
        workers=settings.ingestion_workers,
        lease_seconds=settings.ingestion_lease_seconds,
        poll_seconds=settings.ingestion_poll_seconds,
        max_attempts=settings.ingestion_max_attempts,
    )
    workers.start()
    return Documents(settings, pool, store, embedder, index, workers)
