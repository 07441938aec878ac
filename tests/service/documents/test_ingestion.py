"""Ingestion state in PostgreSQL: claims never overlap, a crash mid-ingestion is picked up again after a
restart, passing failures are retried and then recorded, and a model change asks for a reindex."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid

import httpx

from admin_api.documents import repository
from tests.service.conftest import client_for
from tests.service.documents.conftest import DOCUMENTS, EMBEDDING_MODEL, SEND, eventually
from tests.support.serve import serving_async


async def test_concurrent_workers_never_claim_the_same_document(db, make_user):
    user = await make_user()
    ids = [str(uuid.uuid4()) for _ in range(12)]
    for doc_id in ids:
        await db.execute(
            'INSERT INTO "USR_DOC" ("DOC_IDT_ID", "USR_ID", "FILE_NM", "CNTN_TYPE", "FILE_SZ", "OBJ_KEY") '
            "VALUES ($1, $2, 'f.txt', 'text/plain', 1, 'k')",
            doc_id,
            user.id,
        )
    claimed: list[str] = []

    async def worker() -> None:
        while True:
            async with db.acquire() as conn:
                row = await repository.claim(conn, uuid.uuid4().hex, 300)
            if row is None:
                return
            claimed.append(row["DOC_IDT_ID"])
            await asyncio.sleep(0)  # let the other workers in between

    await asyncio.gather(*(worker() for _ in range(4)))
    mine = [doc_id for doc_id in claimed if doc_id in ids]
    assert sorted(mine) == sorted(ids)  # each exactly once
    await db.execute('DELETE FROM "USR_DOC" WHERE "DOC_IDT_ID" = ANY($1::varchar[])', ids)


async def test_passing_embedding_failure_is_retried(open_docs, openai_server):
    async with open_docs() as docs:
        openai_server.fail_embeddings(503)
        doc = await docs.upload_ok(docs.alice, "a.txt", b"Retry me, please.")
        done = await docs.wait_done(docs.alice, doc["document_id"], timeout=90)  # back-off: 5 s
        assert done["status"] == "ready"
        assert len(openai_server.embedding_requests) >= 2


async def test_embeddings_down_for_good_fails_with_a_reason(open_docs, openai_server):
    async with open_docs(ingestion_max_attempts=1) as docs:
        openai_server.fail_embeddings(503)
        doc = await docs.upload_ok(docs.alice, "a.txt", b"Never embedded.")
        done = await docs.wait_done(docs.alice, doc["document_id"])
        assert done["status"] == "failed"
        assert done["error"].startswith("The embedding model was unavailable")


def _serve_env(settings) -> dict[str, str]:
    return {
        "DATABASE_URL": settings.database_url,
        "REDIS_URL": settings.redis_url,
        "LLM_ENDPOINT": str(settings.llm_endpoint),
        "LLM_MODEL": settings.llm_model,
        "COOKIE_SECURE": "false",
        "MINIO_ENDPOINT": settings.minio_endpoint,
        "MINIO_ACCESS_KEY": settings.minio_access_key.get_secret_value(),
        "MINIO_SECRET_KEY": settings.minio_secret_key.get_secret_value(),
        "MINIO_BUCKET": settings.minio_bucket,
        "MINIO_SECURE": "false",
        "QDRANT_PATH": settings.qdrant_path,
        "EMBEDDING_MODEL_ENDPOINT": str(settings.embedding_model_endpoint),
        "EMBEDDING_MODEL": settings.embedding_model,
        "EMBEDDING_MAX_RETRIES": "0",
        "INGESTION_LEASE_SECONDS": "5",
        "INGESTION_POLL_SECONDS": "0.5",
    }


async def test_a_crash_mid_ingestion_is_ready_after_restart(docs_settings, make_user, openai_server, tmp_path, db):
    env = _serve_env(docs_settings())
    user = await make_user()
    openai_server.hold_embeddings()
    async with serving_async(env, tmp_path / "first") as first:
        async with httpx.AsyncClient(base_url=first.base_url) as http:
            login = await http.post("/api/v1/auth/login", json={"username": user.username, "password": user.password})
            assert login.status_code == 200
            uploaded = await http.post(DOCUMENTS, files={"file": ("crash.txt", b"Survives a crash.", "text/plain")})
            assert uploaded.status_code == 202, uploaded.text
            doc_id = uploaded.json()["document_id"]
        await openai_server.wait_until(lambda: len(openai_server.embedding_requests) >= 1, timeout=30)
        first.process.kill()  # SIGKILL: no shutdown, the lease is left behind
        await first.wait(10)
    row = await db.fetchrow('SELECT "STTS_CD", "LEASE_TOKEN" FROM "USR_DOC" WHERE "DOC_IDT_ID" = $1', doc_id)
    assert row["STTS_CD"] == "processing" and row["LEASE_TOKEN"] is not None
    openai_server.release_embeddings()

    async with serving_async(env, tmp_path / "second") as second:
        async with httpx.AsyncClient(base_url=second.base_url) as http:
            await http.post("/api/v1/auth/login", json={"username": user.username, "password": user.password})

            async def ready():
                body = (await http.get(f"{DOCUMENTS}/{doc_id}")).json()
                return body if body["status"] != "processing" else None

            done = await eventually(ready, timeout=60, what="the document to be picked up again")
            assert done["status"] == "ready", done
            answer = await http.post(SEND, json={"message": "What survives?", "use_documents": True})
            assert answer.json()["sources"][0]["document_id"] == doc_id


async def test_model_change_asks_for_reindex_and_reindex_rebuilds(open_docs, openai_server, docs_settings):
    async with open_docs() as docs:
        doc = await docs.ingest(docs.alice, "m.txt", b"Moose migrate north in spring.")
        alice_user = docs.alice.user
    openai_server.embedding_dimensions["new-embed"] = 32
    before = len(openai_server.embedding_requests)
    async with open_docs(embedding_model="new-embed") as docs:
        async with client_for(docs.app) as alice:  # the same user, in the app with the new model
            await alice.post("/api/v1/auth/login", json={"username": alice_user.username, "password": alice_user.password})
            shown = (await alice.get(f"{DOCUMENTS}/{doc['document_id']}")).json()
            assert shown["status"] == "ready" and "admin-api reindex" in shown["error"]
            refused = await alice.post(SEND, json={"message": "moose?", "use_documents": True})
            assert refused.status_code == 409
            assert "admin-api reindex" in refused.json()["detail"]
            assert openai_server.chat_requests == []

            settings = docs_settings(embedding_model="new-embed")
            reindex = subprocess.run(
                [sys.executable, "-m", "admin_api.cli", "reindex"],
                env={"PATH": os.environ["PATH"], "DATABASE_URL": settings.database_url},
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert reindex.returncode == 0, reindex.stderr
            assert "queued" in reindex.stdout

            async def rebuilt():
                body = (await alice.get(f"{DOCUMENTS}/{doc['document_id']}")).json()
                return body if body["status"] == "ready" and body["error"] is None else None

            await eventually(rebuilt, what="the document to be reindexed")
            answer = await alice.post(SEND, json={"message": "Where do moose migrate?", "use_documents": True})
            assert answer.status_code == 200
            assert answer.json()["sources"][0]["document_id"] == doc["document_id"]
            models_used = {r.model for r in openai_server.embedding_requests[before:]}
            assert models_used == {"new-embed"}  # nothing of the old model was mixed in
    assert before and {r.model for r in openai_server.embedding_requests[:before]} == {EMBEDDING_MODEL}
