"""Fixtures for the service's tests: a migrated database, settings, the app with its lifespan running,
HTTP clients over ASGI, users and logged-in clients.

    async def test_x(user_client, other_user_client, seed_conversation):
        cnvs_idt_id = await seed_conversation(user_client.user.id, title="Mine")
        response = await other_user_client.post("/api/v1/history/detail", json={"cnvs_idt_id": cnvs_idt_id})
        assert response.status_code == 404

Clients talk to https://testserver, so the session cookie (Secure by default) is kept and sent.
"""

from __future__ import annotations

import asyncio
import secrets
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime

import asyncpg
import httpx
import pytest
from admin_api.auth.repository import insert_user
from admin_api.auth.service import hash_password
from admin_api.main import create_app
from admin_api.migrations import upgrade
from admin_api.settings import Settings
from fastapi import FastAPI
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource
from redis.asyncio import Redis

BASE_URL = "https://testserver"
ALLOWED_ORIGIN = "https://chat.example.com"


class IsolatedSettings(Settings):
    """Settings from the test's arguments only: a developer's exported DATABASE_URL or
    COOKIE_SECURE must not leak into the tests."""

    @classmethod
    def settings_customise_sources(
        cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource, *args, **kwargs
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)


@dataclass(frozen=True)
class SeededUser:
    id: int
    username: str
    password: str
    is_admin: bool


@pytest.fixture(scope="session")
async def database_url(postgres_url: str) -> str:
    """This session's database, migrated (alembic runs its own event loop: do it in a thread)."""
    await asyncio.to_thread(upgrade, postgres_url)
    return postgres_url


@pytest.fixture(scope="session")
async def db(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    """A pool for seeding and inspecting the database directly."""
    pool = await asyncpg.create_pool(database_url.replace("+asyncpg", "", 1), min_size=1, max_size=4)
    yield pool
    await pool.close()


@pytest.fixture(scope="session")
def make_settings(database_url: str, redis_url: str, openai_server) -> Callable[..., Settings]:
    def make(**overrides) -> Settings:
        values = {
            "database_url": database_url,
            "redis_url": redis_url,
            "llm_endpoint": openai_server.url,
            "llm_model": "test-model",
            "cors_origins": [ALLOWED_ORIGIN],
            **overrides,
        }
        return IsolatedSettings(**values)

    return make


@pytest.fixture
async def redis(settings: Settings):
    """A Redis client on the app's database, for tests that look at what the service stored there."""
    client = Redis.from_url(settings.redis_url, decode_responses=True)
    yield client
    await client.aclose()


@pytest.fixture
def settings(make_settings) -> Settings:
    return make_settings()


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[FastAPI]:
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


def client_for(app: FastAPI, *, client_ip: str = "127.0.0.1", **kwargs) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=(client_ip, 50000))
    return httpx.AsyncClient(transport=transport, base_url=BASE_URL, **kwargs)


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(app) as http:
        yield http


@pytest.fixture
def make_user(db: asyncpg.Pool) -> Callable[..., Awaitable[SeededUser]]:
    async def make(username: str | None = None, password: str | None = None, admin: bool = False) -> SeededUser:
        username = username or f"user-{uuid.uuid4().hex[:12]}"
        password = password or secrets.token_urlsafe(12)
        password_hash = await asyncio.to_thread(hash_password, password)
        user_id = await insert_user(db, username=username, password_hash=password_hash, is_admin=admin)
        return SeededUser(id=user_id, username=username, password=password, is_admin=admin)

    return make


@pytest.fixture
def login() -> Callable[[httpx.AsyncClient, str, str], Awaitable[httpx.Response]]:
    async def do_login(http: httpx.AsyncClient, username: str, password: str) -> httpx.Response:
        response = await http.post("/api/v1/auth/login", json={"username": username, "password": password})
        assert response.status_code == 200, response.text
        return response

    return do_login


async def _logged_in_client(app: FastAPI, make_user, login) -> AsyncIterator[httpx.AsyncClient]:
    user = await make_user()
    async with client_for(app) as http:
        await login(http, user.username, user.password)
        http.user = user  # the SeededUser behind this client
        yield http


@pytest.fixture
async def user_client(app, make_user, login) -> AsyncIterator[httpx.AsyncClient]:
    """A client logged in as a fresh user; `user_client.user` is that SeededUser."""
    async for http in _logged_in_client(app, make_user, login):
        yield http


@pytest.fixture
async def other_user_client(app, make_user, login) -> AsyncIterator[httpx.AsyncClient]:
    """A second logged-in client, as another fresh user."""
    async for http in _logged_in_client(app, make_user, login):
        yield http


@pytest.fixture
def seed_conversation(db: asyncpg.Pool) -> Callable[..., Awaitable[str]]:
    """Insert a conversation (and its messages) with SQL, as the chat service would; returns its id."""

    async def seed(
        user_id: int,
        *,
        title: str = "A conversation",
        reg_dt: datetime | None = None,
        messages: list[tuple[str, str]] = (),
        active: bool = True,
    ) -> str:
        cnvs_idt_id = str(uuid.uuid4())
        async with db.acquire() as conn, conn.transaction():
            await conn.execute(
                'INSERT INTO "USR_CNVS_SMRY" ("CNVS_IDT_ID", "USR_ID", "CNVS_TTL", "USE_YN", "REG_DT", "UPD_DT") '
                "VALUES ($1, $2, $3, $4, coalesce($5, clock_timestamp()), coalesce($5, clock_timestamp()))",
                cnvs_idt_id,
                user_id,
                title,
                "Y" if active else "N",
                reg_dt,
            )
            for role, content in messages:
                await conn.execute(
                    'INSERT INTO "CNVS_MSG" ("MSG_IDT_ID", "CNVS_IDT_ID", "ROLE_CD", "MSG_CN") VALUES ($1, $2, $3, $4)',
                    str(uuid.uuid4()),
                    cnvs_idt_id,
                    role,
                    content,
                )
        return cnvs_idt_id

    return seed
