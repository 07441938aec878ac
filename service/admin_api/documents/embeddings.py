"""The OpenAI-compatible /v1/embeddings endpoint (vLLM in production) at EMBEDDING_MODEL_ENDPOINT.

The openai SDK does the wire, the timeouts and the retries (exponential back-off with jitter on
connection errors, 408, 409, 429 and 5xx, up to EMBEDDING_MAX_RETRIES). Inputs go in batches of
EMBEDDING_BATCH_SIZE. The vector size is whatever the endpoint returns; every vector must have it.
"""

from __future__ import annotations

import logging

import openai

log = logging.getLogger(__name__)

PLACEHOLDER_API_KEY = "unused"  # vLLM ignores it, the SDK insists on one


class EmbeddingsUnavailable(Exception):
    """The endpoint failed (after its retries) or answered something unusable."""

    detail = "The embedding model is unavailable. Please try again later."


class Embedder:
    def __init__(
        self,
        endpoint: str,
        model: str,
        *,
        api_key: str | None,
        batch_size: int,
        timeout_seconds: float,
        max_retries: int,
    ) -> None:
        self.model = model
        self.batch_size = batch_size
        self.dimensions: int | None = None  # learned from the first answer
        self._client = openai.AsyncOpenAI(
            base_url=endpoint,
            api_key=api_key or PLACEHOLDER_API_KEY,
            timeout=openai.Timeout(timeout_seconds, connect=min(5.0, timeout_seconds)),
            max_retries=max_retries,
        )

    async def close(self) -> None:
        await self._client.close()

    async def embed(self, texts: list[str]) -> list[list[float]]:
        vectors: list[list[float]] = []
        for start in range(0, len(texts), self.batch_size):
            vectors += await self._embed_batch(texts[start : start + self.batch_size])
        return vectors

    async def embed_one(self, text: str) -> list[float]:
        return (await self._embed_batch([text]))[0]

    async def _embed_batch(self, batch: list[str]) -> list[list[float]]:
        try:
            response = await self._client.embeddings.create(model=self.model, input=batch, encoding_format="float")
            ordered = sorted(response.data, key=lambda item: item.index)
            vectors = [list(item.embedding) for item in ordered]
        except (openai.OpenAIError, ValueError, TypeError, AttributeError) as error:
            # The SDK's text may echo the input: only the kind is logged.
            log.warning("embeddings call failed", extra={"error_type": type(error).__name__})
            raise EmbeddingsUnavailable() from None
        if len(vectors) != len(batch) or not vectors or not vectors[0]:
            log.warning("embeddings answer unusable", extra={"expected": len(batch), "got": len(vectors)})
            raise EmbeddingsUnavailable()
        size = len(vectors[0])
        if any(len(vector) != size for vector in vectors):
            log.warning("embeddings of different sizes in one answer")
            raise EmbeddingsUnavailable()
        self.dimensions = size  # a changed size means another model: index.key() gives it a new collection
        return vectors
