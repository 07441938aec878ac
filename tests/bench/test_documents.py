"""Documents (`make bench`), each against its floor measured in the same run (printed and written, never
asserted: the machine is shared and noisy; the tests assert only that the path worked):

- ingestion: documents uploaded through POST /api/v1/documents of a real `admin-api serve` (S3 on SeaweedFS,
  embedded Qdrant, the real local embedding model), from the first upload until all are `ready`, against the
  same chunks sent straight to the embeddings server in the same batches: chunks per second, both;
- retrieval in a chat turn: chat/send with `use_documents` against the same turn without (the LLM server
  answers at once), the difference against its floor: one embedding call for the question and the Qdrant
  search (the service's own index module, on a copy of the service's store), timed from here;
- search with 10,000 chunks per user in the embedded mode (3 users), through the service's index module in
  this process: owner-filtered against the same search unfiltered, in the service's layout (a collection per
  user) and in one collection shared by the 3 users (the layout of the server mode).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import itertools
import shutil
import time
from pathlib import Path
from unittest import mock

import aiohttp
import numpy
import pytest

from admin_api.documents import index as vector_index
from admin_api.documents.chunking import Chunker
from admin_api.documents.embeddings import Embedder
from admin_api.documents.extraction import Limits, extract, sniff
from admin_api.documents.index import VectorIndex
from admin_api.documents.service import RETRIEVAL_CANDIDATES
from admin_api.settings import Settings
from tests.bench import seed
from tests.bench.load import compare, expect_json, log_in, session
from tests.bench.report import Figure, latency
from tests.bench.retrieval_set import QUESTIONS, corpus, corpus_passages

pytestmark = [pytest.mark.bench, pytest.mark.timeout(900)]

# Users of their own (seeded, tests/bench/seed.py): documents of one benchmark never widen another's search.
INGESTION_USER = f"{seed.CHAT_USER_PREFIX}{seed.CHAT_USERS - 1}"
RETRIEVAL_USER = f"{seed.CHAT_USER_PREFIX}{seed.CHAT_USERS - 2}"
DOCUMENTS = 8  # per round
DOCUMENT_CHARS = 16_000  # about 8 chunks of the default 500 tokens each
INGESTION_ROUNDS = 2
POLL_SECONDS = 0.1
READY_TIMEOUT = 300
SEARCH_USERS = 3
CHUNKS_PER_USER = 10_000
CHUNKS_PER_DOCUMENT = 100
CHUNK_CHARS = 2_500  # about the default 500 tokens
DIMENSIONS = 384  # all-MiniLM-L6-v2's


def _default(name: str):
    """A setting as the service runs without it set (the benchmarks' servers leave these alone)."""
    return Settings.model_fields[name].default


def _chunks(raw: bytes) -> list[str]:
    """The chunks the ingestion worker makes of this upload: the same functions, on the default settings."""
    limits = Limits(_default("max_document_pages"), _default("max_unpacked_bytes"), _default("max_document_chars"))
    chunker = Chunker(_default("chunk_tokens"), _default("chunk_overlap_tokens"), _default("chunk_tokenizer_file"))
    return chunker.split(extract(raw, sniff(io.BytesIO(raw)), limits))


async def _ingest(http: aiohttp.ClientSession, base_url: str, cookie: dict, files: dict[str, bytes]
                  ) -> tuple[float, int]:
    """Upload the files one after the other, then poll the list until all are ready: (seconds, their chunks)."""
    started = time.perf_counter()
    ids = set()
    for name, raw in files.items():
        form = aiohttp.FormData()
        form.add_field("file", raw, filename=name, content_type="text/markdown")
        async with http.post(f"{base_url}/api/v1/documents", data=form, headers=cookie) as response:
            ids.add((await expect_json(response, 202))["document_id"])
    while True:
        async with http.get(f"{base_url}/api/v1/documents", params={"limit": "100"}, headers=cookie) as response:
            items = [item for item in (await expect_json(response))["items"] if item["document_id"] in ids]
        assert len(items) == len(ids), "an uploaded document is missing from the first page of the list"
        failed = [item for item in items if item["status"] == "failed"]
        assert not failed, failed
        if all(item["status"] == "ready" for item in items):
            return time.perf_counter() - started, sum(item["chunks"] for item in items)
        assert time.perf_counter() - started < READY_TIMEOUT, items
        await asyncio.sleep(POLL_SECONDS)


async def _embed(http: aiohttp.ClientSession, server, texts: list[str]) -> list[list[float]]:
    """One /v1/embeddings call as the service makes it (floats), from the load generator's lean client."""
    body = {"model": server.model, "input": texts, "encoding_format": "float"}
    async with http.post(f"{server.url}/embeddings", json=body) as response:
        data = (await expect_json(response))["data"]
    assert len(data) == len(texts)
    return [item["embedding"] for item in sorted(data, key=lambda item: item["index"])]


# ---- ingestion ------------------------------------------------------------------------------------------


async def test_ingestion_throughput(documents_service, embeddings_server, bench_report):
    files = {f"document-{n}.md": f"# Document {n}\n\n{text}\n".encode()
             for n, text in enumerate(corpus_passages(DOCUMENTS, DOCUMENT_CHARS))}
    chunks = {name: _chunks(raw) for name, raw in files.items()}
    total = sum(len(pieces) for pieces in chunks.values())
    batch = _default("embedding_batch_size")
    base_url = documents_service.base_url

    async def directly(http: aiohttp.ClientSession) -> float:
        """Each document's chunks in the worker's batches (at most EMBEDDING_BATCH_SIZE, one document at a time)."""
        started = time.perf_counter()
        for pieces in chunks.values():
            for start in range(0, len(pieces), batch):
                await _embed(http, embeddings_server, pieces[start : start + batch])
        return time.perf_counter() - started

    ingestion_seconds = direct_seconds = 0.0
    async with session(2) as http:
        _, cookie = await log_in(http, base_url, INGESTION_USER, seed.PASSWORD)
        # Warm-up: the user's collection, the service's and the model's first calls.
        await _ingest(http, base_url, cookie, {"warm-up.md": b"# Warm-up\n\nA first document. It is short.\n"})
        await _embed(http, embeddings_server, ["warm-up"])
        for _ in range(INGESTION_ROUNDS):  # alternating, so that both see the same machine load
            direct_seconds += await directly(http)
            seconds, indexed = await _ingest(http, base_url, cookie, files)
            assert indexed == total  # the service cut the documents exactly as counted here
            ingestion_seconds += seconds
    ingested, direct = INGESTION_ROUNDS * total / ingestion_seconds, INGESTION_ROUNDS * total / direct_seconds
    bench_report.add(Figure(
        f"ingestion, {DOCUMENTS} documents ({total} chunks) upload -> all ready, throughput", ingested, direct,
        "chunks/s", f"the same chunks straight to the embeddings server, same batches (<= {batch})",
        details={"documents": DOCUMENTS, "chunks": total, "rounds": INGESTION_ROUNDS,
                 "ingestion_seconds": round(ingestion_seconds, 3), "direct_seconds": round(direct_seconds, 3)}))


# ---- retrieval in a chat turn ---------------------------------------------------------------------------


async def test_retrieval_in_a_chat_turn(documents_service, documents_env, embeddings_server, bench_report, tmp_path):
    base_url, send = documents_service.base_url, f"{documents_service.base_url}/api/v1/chat/send"
    top_k = _default("retrieval_top_k") * RETRIEVAL_CANDIDATES  # what the service asks the index for
    hybrid = _default("retrieval_mode") == "hybrid"
    async with session(2) as http:
        user_id, cookie = await log_in(http, base_url, RETRIEVAL_USER, seed.PASSWORD)
        _, chunks = await _ingest(http, base_url, cookie, corpus())
        dimensions = len((await _embed(http, embeddings_server, ["dimensions"]))[0])
    # The embedded store serves one process (the service holds it): the floor searches a copy of it, the
    # documents all ready, so nothing is written meanwhile.
    shutil.copytree(documents_env["QDRANT_PATH"], tmp_path / "qdrant")
    index = VectorIndex(host=None, port=0, api_key=None, https=False, path=str(tmp_path / "qdrant"))
    index_key = vector_index.key(embeddings_server.model, dimensions)

    def questions():  # each call goes through the same questions in the same order
        return itertools.cycle([question.text for question in QUESTIONS])

    with_questions, without_questions, floor_questions, sdk_questions = (questions() for _ in range(4))
    # Where part of the time goes: the same floor with the service's own embeddings client (the openai SDK).
    embedder = Embedder(embeddings_server.url, embeddings_server.model, api_key=None, batch_size=1,
                        timeout_seconds=30, max_retries=0)

    async def with_documents(http: aiohttp.ClientSession) -> None:
        body = {"message": next(with_questions), "use_documents": True}
        async with http.post(send, json=body, headers=cookie) as response:
            assert (await expect_json(response))["sources"]  # retrieval ran, and found chunks

    async def without_documents(http: aiohttp.ClientSession) -> None:
        async with http.post(send, json={"message": next(without_questions)}, headers=cookie) as response:
            await expect_json(response)

    async def floor(http: aiohttp.ClientSession) -> None:
        question = next(floor_questions)
        vector = (await _embed(http, embeddings_server, [question]))[0]
        assert await index.search(index_key, user_id, vector=vector, text=question, top_k=top_k, document_ids=None,
                                  hybrid=hybrid)

    async def floor_with_sdk(_http) -> None:
        question = next(sdk_questions)
        vector = await embedder.embed_one(question)
        assert await index.search(index_key, user_id, vector=vector, text=question, top_k=top_k, document_ids=None,
                                  hybrid=hybrid)

    try:
        ours, without, base, sdk = await compare(with_documents, without_documents, floor, floor_with_sdk,
                                                 count=150, warmup=10)
    finally:
        await embedder.close()
        await index.close()
    latency(bench_report, f"chat/send JSON with use_documents ({chunks} chunks), 1 user", ours, without,
            "the same turn without use_documents (the LLM answers at once)", compare_by="delta")
    bench_report.add(Figure(
        "time retrieval adds to a chat turn (p50 with - p50 without)", ours.p50 - without.p50, base.p50, "ms",
        f"its floor: embedding the question + the {'hybrid' if hybrid else 'dense'} Qdrant search, from here",
        details={"with": ours.as_json(), "without": without.as_json(), "floor": base.as_json(), "chunks": chunks}))
    latency(bench_report, "retrieval's floor with the service's embeddings client (openai SDK)", sdk, base,
            "the floor above (its embedding call with aiohttp)", compare_by="delta")


# ---- search latency in the embedded mode ----------------------------------------------------------------

# (what, users in the store, server layout, retrieval modes): in the service's layout the other users' chunks
# are in collections of their own, which a search never reads, so that store holds the measured user's only.
# Hybrid is not repeated in the shared collection: there it takes seconds a search (the sparse arm is scored
# in Python over every point; the per-user rows show its cost).
LAYOUTS = [
    ("a collection per user (the service's)", [1], False, {"hybrid": True, "dense": False}),
    (f"one collection of {SEARCH_USERS} users (the server mode's layout)", list(range(1, SEARCH_USERS + 1)), True,
     {"dense": False}),
]
SEARCHES = 30  # of each, filtered and not, in 3 alternating rounds


def _disk_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 1e6


async def _build(path: Path, index_key: str, users: list[int], shared: bool, texts: list[str]) -> float:
    """CHUNKS_PER_USER chunks for each user through VectorIndex.add, in documents of CHUNKS_PER_DOCUMENT, with
    random unit vectors (a scan's cost does not depend on them); returns the seconds it took."""
    rng = numpy.random.default_rng(10)
    index = VectorIndex(host=None, port=0, api_key=None, https=False, path=str(path))
    started = time.perf_counter()
    try:
        if shared:
            index.shared = True  # the server mode's layout and owner filter, on the embedded store
        for user_id in users:
            for document in range(CHUNKS_PER_USER // CHUNKS_PER_DOCUMENT):
                vectors = rng.standard_normal((CHUNKS_PER_DOCUMENT, DIMENSIONS)).astype(numpy.float32)
                vectors /= numpy.linalg.norm(vectors, axis=1, keepdims=True)
                start = (user_id * 7919 + document * CHUNKS_PER_DOCUMENT) % (len(texts) - CHUNKS_PER_DOCUMENT)
                await index.add(index_key, user_id, f"u{user_id}-d{document}",
                                texts[start : start + CHUNKS_PER_DOCUMENT], vectors.tolist())
        return time.perf_counter() - started
    finally:
        await index.close()


@pytest.mark.parametrize(("layout", "users", "shared", "modes"), LAYOUTS, ids=["per-user", "shared"])
async def test_embedded_search(layout, users, shared, modes, tmp_path, bench_report):
    index_key = vector_index.key("bench-model", DIMENSIONS)
    texts = corpus_passages(2_000, CHUNK_CHARS)  # chunk texts: the sparse vectors and payloads of real ones
    build_seconds = await _build(tmp_path, index_key, users, shared, texts)
    started = time.perf_counter()
    index = VectorIndex(host=None, port=0, api_key=None, https=False, path=str(tmp_path))  # loads it all
    open_seconds = time.perf_counter() - started
    index.shared = shared
    chunks = len(users) * CHUNKS_PER_USER
    print(f"\nembedded store, {layout}: {chunks:,} chunks indexed in {build_seconds:.0f} s "
          f"({chunks / build_seconds:.0f} chunks/s), {_disk_mb(tmp_path):.0f} MB on disk, "
          f"opened in {open_seconds:.1f} s")
    user_id = users[0]
    rng = numpy.random.default_rng(11)
    asked = [(rng.standard_normal(DIMENSIONS).tolist(), question.text) for question in QUESTIONS]
    top_k = _default("retrieval_top_k") * RETRIEVAL_CANDIDATES  # what the service asks the index for

    def search(hybrid: bool, filtered: bool):
        queries = itertools.cycle(asked)  # each call asks the same queries in the same order
        # The baseline: the same search with the module's owner filter replaced by none.
        unfiltered = mock.patch.object(vector_index, "_owner_filter", lambda *_: None)

        async def call(_http) -> None:
            vector, text = next(queries)
            with contextlib.nullcontext() if filtered else unfiltered:
                hits = await index.search(index_key, user_id, vector=vector, text=text, top_k=top_k,
                                          document_ids=None, hybrid=hybrid)
            assert hits and (not filtered or all(hit.document_id.startswith(f"u{user_id}-") for hit in hits))

        return call

    try:
        for mode, hybrid in modes.items():
            ours, base = await compare(search(hybrid, True), search(hybrid, False), count=SEARCHES, warmup=3)
            for quantile in (0.5, 0.95):
                latency(bench_report, f"embedded search, {mode}, 10,000 chunks of 1 user, {layout}", ours, base,
                        "the same search unfiltered, same collection", quantile=quantile)
    finally:
        await index.close()
