"""Documents fixtures: an app with documents on (the session's SeaweedFS, a bucket of the test's own, an
embedded Qdrant in the test's temporary directory, the OpenAI-wire test server's /v1/embeddings), logged-in
clients, and helpers to upload and wait.

    async def test_x(docs):
        doc = await docs.upload(docs.alice, "notes.txt", b"The llama eats grass.")
        ready = await docs.wait_done(docs.alice, doc["document_id"])
        assert ready["status"] == "ready"
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from minio import Minio
from minio.deleteobjects import DeleteObject

from admin_api.main import create_app
from tests.service.conftest import client_for
from tests.support.s3 import S3Server

DOCUMENTS = "/api/v1/documents"
SEND = "/api/v1/chat/send"
EMBEDDING_MODEL = "test-embed"


async def eventually(condition: Callable[[], Awaitable[Any]], *, timeout: float = 60.0, what: str = "") -> Any:
    """Poll an async condition until it returns something truthy (AssertionError means "not yet")."""
    deadline = time.monotonic() + timeout
    last = "falsy"
    while True:
        try:
            result = await condition()
            if result:
                return result
            last = repr(result)
        except AssertionError as error:
            last = str(error)
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what or 'condition'}: {last}")
        await asyncio.sleep(0.1)


@pytest.fixture
def bucket(s3_server: S3Server) -> AsyncIterator[str]:
    name = f"docs-{uuid.uuid4().hex[:12]}"
    yield name
    s3 = s3_server.client()
    with contextlib.suppress(Exception):
        if s3.bucket_exists(name):
            objects = [DeleteObject(o.object_name) for o in s3.list_objects(name, recursive=True)]
            list(s3.remove_objects(name, objects))
            s3.remove_bucket(name)


@pytest.fixture
def s3(s3_server: S3Server) -> Minio:
    return s3_server.client()


@pytest.fixture
def docs_settings(make_settings, s3_server: S3Server, bucket: str, openai_server, tmp_path) -> Callable[..., Any]:
    """Settings with documents on; keyword arguments override."""

    def make(**overrides):
        values = {
            "minio_endpoint": s3_server.endpoint,
            "minio_access_key": s3_server.access_key,
            "minio_secret_key": s3_server.secret_key,
            "minio_bucket": bucket,
            "minio_secure": s3_server.secure,
            "qdrant_path": str(tmp_path / "qdrant"),
            "embedding_model_endpoint": openai_server.url,
            "embedding_model": EMBEDDING_MODEL,
            "embedding_max_retries": 0,
            "ingestion_poll_seconds": 0.2,
            "chunk_tokens": 60,
            "chunk_overlap_tokens": 10,
            **overrides,
        }
        return make_settings(**values)

    return make


@dataclass
class Docs:
    app: FastAPI
    alice: httpx.AsyncClient
    bob: httpx.AsyncClient

    async def upload(self, client: httpx.AsyncClient, filename: str, data: bytes, content_type: str = "text/plain"):
        return await client.post(DOCUMENTS, files={"file": (filename, data, content_type)})

    async def upload_ok(self, client: httpx.AsyncClient, filename: str, data: bytes, content_type: str = "text/plain"):
        response = await self.upload(client, filename, data, content_type)
        assert response.status_code == 202, response.text
        return response.json()

    async def wait_done(self, client: httpx.AsyncClient, document_id: str, timeout: float = 60.0) -> dict:
        async def done():
            response = await client.get(f"{DOCUMENTS}/{document_id}")
            assert response.status_code == 200, response.text
            body = response.json()
            return body if body["status"] != "processing" else None

        return await eventually(done, timeout=timeout, what=f"document {document_id} to be processed")

    async def ingest(self, client: httpx.AsyncClient, filename: str, data: bytes) -> dict:
        document = await self.upload_ok(client, filename, data)
        done = await self.wait_done(client, document["document_id"])
        assert done["status"] == "ready", done
        return done

    async def ask(self, client: httpx.AsyncClient, message: str, **fields) -> httpx.Response:
        return await client.post(SEND, json={"message": message, "use_documents": True, **fields})


@asynccontextmanager
async def running(app: FastAPI) -> AsyncIterator[FastAPI]:
    async with app.router.lifespan_context(app):
        yield app


async def logged_in(app: FastAPI, make_user, login, stack: contextlib.AsyncExitStack) -> httpx.AsyncClient:
    user = await make_user()
    http = await stack.enter_async_context(client_for(app))
    await login(http, user.username, user.password)
    http.user = user
    return http


@pytest.fixture
def open_docs(docs_settings, make_user, login):
    """`async with open_docs(**settings) as docs:` an app with documents on, and two logged-in users."""

    @asynccontextmanager
    async def open_(**overrides) -> AsyncIterator[Docs]:
        app = create_app(docs_settings(**overrides))
        async with running(app), contextlib.AsyncExitStack() as stack:
            alice = await logged_in(app, make_user, login, stack)
            bob = await logged_in(app, make_user, login, stack)
            yield Docs(app, alice, bob)

    return open_


@pytest.fixture
async def docs(open_docs) -> AsyncIterator[Docs]:
    async with open_docs() as opened:
        yield opened
