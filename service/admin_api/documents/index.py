"""The vector index in Qdrant: one point per chunk, with a dense vector (the embedding model's) and a
sparse one (term frequencies; Qdrant applies IDF) for hybrid search fused by reciprocal rank.

- A collection per embedding model and vector size (`key`): a new model never mixes its vectors
  with the old one's; documents indexed under another key need `admin-api reindex`.
- Every query is filtered by the owner. With a Qdrant server (QDRANT_HOST) all users share the
  collection, the owner a tenant-indexed payload field. In the embedded mode (no server; one process)
  search is a brute-force scan of the collection, filtered or not: so each user gets a collection of
  their own there, and a search reads only the caller's chunks.
- The embedded mode's client is synchronous: its calls run in one worker thread, off the event loop.
"""

from __future__ import annotations

import logging
import re
import uuid
import zlib
from collections import Counter
from dataclasses import dataclass
from functools import partial
from typing import Any

import anyio
import httpx
from qdrant_client import AsyncQdrantClient, QdrantClient, models
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

log = logging.getLogger(__name__)

DENSE = "dense"
SPARSE = "sparse"
POINT_NAMESPACE = uuid.UUID("5b0c1f47-8e0a-4d7e-9a51-6a0d6f3e2c11")
PREFETCH_FACTOR = 4  # each arm of a hybrid search proposes this many times top_k candidates
UPSERT_BATCH = 256
_WORDS = re.compile(r"\w+", re.UNICODE)
_BM25_K1 = 1.2


class IndexUnavailable(Exception):
    detail = "The document index is unavailable. Please try again later."


@dataclass(frozen=True)
class Hit:
    document_id: str
    chunk_index: int
    score: float
    text: str


def key(model: str, dimensions: int) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", model.lower()).strip("-")[:80] or "model"
    return f"documents_{slug}_{dimensions}"


def sparse_vector(text: str) -> models.SparseVector:
    """Hashed terms with BM25's saturated term frequency (Qdrant's IDF modifier supplies the rest)."""
    counts = Counter(zlib.crc32(word.encode()) & 0x7FFFFFFF for word in _WORDS.findall(text.lower()))
    indices = sorted(counts)
    values = [counts[i] * (_BM25_K1 + 1) / (counts[i] + _BM25_K1) for i in indices]
    return models.SparseVector(indices=indices, values=values)


def point_id(document_id: str, chunk_index: int) -> str:
    return str(uuid.uuid5(POINT_NAMESPACE, f"{document_id}:{chunk_index}"))


def _owner_filter(user_id: int, document_ids: list[str] | None = None) -> models.Filter:
    must: list[Any] = [models.FieldCondition(key="owner", match=models.MatchValue(value=user_id))]
    if document_ids is not None:
        must.append(models.FieldCondition(key="document_id", match=models.MatchAny(any=document_ids)))
    return models.Filter(must=must)


class VectorIndex:
    def __init__(
        self, *, host: str | None, port: int, api_key: str | None, https: bool, path: str
    ) -> None:
        self.shared = host is not None  # a server: one collection per key, owners as tenants
        self._known: set[str] = set()
        if host is not None:
            self._async: AsyncQdrantClient | None = AsyncQdrantClient(
                host=host, port=port, api_key=api_key, https=https, timeout=10
            )
            self._local: QdrantClient | None = None
        else:
            self._async = None
            self._local = QdrantClient(path=path, force_disable_check_same_thread=True)
            self._thread = anyio.CapacityLimiter(1)

    async def close(self) -> None:
        if self._async is not None:
            await self._async.close()
        if self._local is not None:
            self._local.close()

    async def _call(self, name: str, **kwargs: Any) -> Any:
        try:
            if self._async is not None:
                return await getattr(self._async, name)(**kwargs)
            return await anyio.to_thread.run_sync(partial(getattr(self._local, name), **kwargs), limiter=self._thread)
        except (UnexpectedResponse, ResponseHandlingException, httpx.HTTPError, OSError) as error:
            log.warning("qdrant call failed", extra={"call": name, "error_type": type(error).__name__})
            raise IndexUnavailable() from None

    def collection(self, index_key: str, user_id: int) -> str:
        return index_key if self.shared else f"{index_key}_u{user_id}"

    async def has_collection(self, index_key: str, user_id: int) -> bool:
        return await self._exists(self.collection(index_key, user_id))

    async def _exists(self, name: str) -> bool:
        if name in self._known:
            return True
        if await self._call("collection_exists", collection_name=name):
            self._known.add(name)
            return True
        return False

    async def _ensure(self, name: str, dimensions: int) -> None:
        if await self._exists(name):
            return
        try:
            await self._call(
                "create_collection",
                collection_name=name,
                vectors_config={DENSE: models.VectorParams(size=dimensions, distance=models.Distance.COSINE)},
                sparse_vectors_config={SPARSE: models.SparseVectorParams(modifier=models.Modifier.IDF)},
            )
        except (IndexUnavailable, ValueError):
            if not await self._call("collection_exists", collection_name=name):  # not a lost race: a failure
                raise
        if self.shared:
            await self._call(
                "create_payload_index",
                collection_name=name,
                field_name="owner",
                # Owners are integers: `is_principal` is the integer index's tenant hint (`is_tenant` is the
                # keyword index's; the client refuses it here).
                field_schema=models.IntegerIndexParams(
                    type=models.IntegerIndexType.INTEGER, lookup=True, range=False, is_principal=True
                ),
            )
            await self._call("create_payload_index", collection_name=name, field_name="document_id", field_schema=models.PayloadSchemaType.KEYWORD)
        self._known.add(name)

    async def add(
        self, index_key: str, user_id: int, document_id: str, chunks: list[str], vectors: list[list[float]]
    ) -> None:
        name = self.collection(index_key, user_id)
        await self._ensure(name, len(vectors[0]))
        points = [
            models.PointStruct(
                id=point_id(document_id, index),
                vector={DENSE: vector, SPARSE: sparse_vector(text)},
                payload={"owner": user_id, "document_id": document_id, "chunk_index": index, "text": text},
            )
            for index, (text, vector) in enumerate(zip(chunks, vectors, strict=True))
        ]
        for start in range(0, len(points), UPSERT_BATCH):
            await self._call("upsert", collection_name=name, points=points[start : start + UPSERT_BATCH], wait=True)

    async def remove(self, index_key: str, user_id: int, document_id: str) -> None:
        name = self.collection(index_key, user_id)
        if not await self._exists(name):
            return
        await self._call(
            "delete",
            collection_name=name,
            points_selector=models.FilterSelector(filter=_owner_filter(user_id, [document_id])),
            wait=True,
        )

    async def search(
        self,
        index_key: str,
        user_id: int,
        *,
        vector: list[float],
        text: str,
        top_k: int,
        document_ids: list[str] | None,
        hybrid: bool,
    ) -> list[Hit]:
        name = self.collection(index_key, user_id)
        if not await self._exists(name):
            return []
        owner = _owner_filter(user_id, document_ids)
        if hybrid:
            candidates = top_k * PREFETCH_FACTOR
            response = await self._call(
                "query_points",
                collection_name=name,
                prefetch=[
                    models.Prefetch(query=vector, using=DENSE, filter=owner, limit=candidates),
                    models.Prefetch(query=sparse_vector(text), using=SPARSE, filter=owner, limit=candidates),
                ],
                query=models.FusionQuery(fusion=models.Fusion.RRF),
                query_filter=owner,
                limit=top_k,
                with_payload=True,
            )
        else:
            response = await self._call(
                "query_points",
                collection_name=name,
                query=vector,
                using=DENSE,
                query_filter=owner,
                limit=top_k,
                with_payload=True,
            )
        return [
            Hit(
                document_id=point.payload["document_id"],
                chunk_index=point.payload["chunk_index"],
                score=float(point.score),
                text=point.payload["text"],
            )
            for point in response.points
        ]
