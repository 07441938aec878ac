"""Delete removes the original, the vectors and the row, also while the document is being ingested; a
deleted document's chunk is never retrieved again."""

from __future__ import annotations

from qdrant_client import QdrantClient, models

from tests.service.documents.conftest import DOCUMENTS, eventually

SECRET = b"The launch code for the garden gnome is orange seventeen."


def points_of(qdrant_path: str, document_id: str) -> int:
    """Points of this document in any collection of the embedded index (open only once the app is closed)."""
    client = QdrantClient(path=qdrant_path)
    try:
        selector = models.Filter(must=[models.FieldCondition(key="document_id", match=models.MatchValue(value=document_id))])
        return sum(
            client.count(collection.name, count_filter=selector, exact=True).count
            for collection in client.get_collections().collections
        )
    finally:
        client.close()


def object_exists(s3, bucket: str, key_prefix: str) -> bool:
    return any(True for _ in s3.list_objects(bucket, prefix=key_prefix, recursive=True))


async def test_delete_removes_original_vectors_and_row(open_docs, docs_settings, s3, bucket):
    qdrant_path = docs_settings().qdrant_path
    async with open_docs() as docs:
        doc = await docs.ingest(docs.alice, "gnome.txt", SECRET)
        await docs.ingest(docs.alice, "other.txt", b"The garden gnome wears a red hat.")
        doc_id = doc["document_id"]
        prefix = f"documents/{docs.alice.user.id}/{doc_id}"
        assert object_exists(s3, bucket, prefix)
        before = (await docs.ask(docs.alice, "What is the gnome's launch code?")).json()["sources"]
        assert any(source["document_id"] == doc_id for source in before)

        response = await docs.alice.delete(f"{DOCUMENTS}/{doc_id}")
        assert response.status_code == 200 and response.json() == {"document_id": doc_id, "deleted": True}

        assert (await docs.alice.get(f"{DOCUMENTS}/{doc_id}")).status_code == 404
        assert (await docs.alice.delete(f"{DOCUMENTS}/{doc_id}")).status_code == 404
        assert not object_exists(s3, bucket, prefix)
        after = (await docs.ask(docs.alice, "What is the gnome's launch code?")).json()["sources"]
        assert after and all(source["document_id"] != doc_id for source in after)
    assert points_of(qdrant_path, doc_id) == 0


async def test_delete_during_ingestion_cancels_it(open_docs, docs_settings, openai_server, s3, bucket, db):
    qdrant_path = docs_settings().qdrant_path
    async with open_docs() as docs:
        openai_server.hold_embeddings()
        doc = await docs.upload_ok(docs.alice, "gnome.txt", SECRET)
        await openai_server.wait_until(lambda: len(openai_server.embedding_requests) >= 1, timeout=30)
        response = await docs.alice.delete(f"{DOCUMENTS}/{doc['document_id']}")
        assert response.status_code == 200
        # The embeddings call in flight was abandoned (the worker's task cancelled), not waited for.
        await openai_server.wait_until(lambda: openai_server.embedding_requests[0].disconnected, timeout=10)
        openai_server.release_embeddings()
        assert not object_exists(s3, bucket, f"documents/{docs.alice.user.id}/{doc['document_id']}")
        await docs.ingest(docs.alice, "other.txt", b"The garden gnome wears a red hat.")
        sources = (await docs.ask(docs.alice, "gnome launch code orange")).json()["sources"]
        assert sources and all(source["document_id"] != doc["document_id"] for source in sources)
    assert points_of(qdrant_path, doc["document_id"]) == 0


async def test_delete_by_another_replica_mid_ingestion_leaves_no_vectors(open_docs, docs_settings, openai_server, db):
    """The row disappears while this process's worker embeds (as when another replica served the DELETE):
    the worker notices at its next lease renewal and keeps nothing."""
    qdrant_path = docs_settings().qdrant_path
    async with open_docs(embedding_batch_size=1) as docs:
        openai_server.hold_embeddings()
        doc = await docs.upload_ok(docs.alice, "gnome.txt", SECRET + b"\n\n" + b"More words here. " * 300)
        await openai_server.wait_until(lambda: len(openai_server.embedding_requests) >= 1, timeout=30)
        await db.execute('DELETE FROM "USR_DOC" WHERE "DOC_IDT_ID" = $1', doc["document_id"])
        openai_server.release_embeddings()

        async def worker_gave_up():
            # Alice's only: earlier tests' documents, queued again by this app's start (their index is not
            # here), may still be going through the same worker.
            row = await db.fetchval('SELECT count(*) FROM "USR_DOC" WHERE "STTS_CD" = \'processing\' AND "USR_ID" = $1',
                                    docs.alice.user.id)
            return row == 0 and len(openai_server.embedding_requests) >= 1

        await eventually(worker_gave_up, what="the worker to give up")
        await docs.ingest(docs.alice, "later.txt", b"A later document, so the worker is surely past the first.")
        assert len(openai_server.embedding_requests) < 10  # it stopped after the first batch, not embed all chunks
    assert points_of(qdrant_path, doc["document_id"]) == 0
