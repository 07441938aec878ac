"""The guide's health endpoints, field for field, on real PostgreSQL and Redis."""

from __future__ import annotations

import asyncio
import re

import pytest

from tests.service.conftest import client_for

TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


async def test_health(client, settings):
    response = await client.get("/health")
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"status", "timestamp", "version", "service"}
    assert body["status"] == "healthy"
    assert body["service"] == "admin-api"
    assert body["version"] == settings.app_version
    assert TIMESTAMP.match(body["timestamp"])


async def test_health_db_names_the_database_from_the_url(client, settings):
    response = await client.get("/health/db")
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"status", "database", "timestamp", "db_name"}
    assert body["status"] == "healthy"
    assert body["database"] == "connected"
    assert body["db_name"] == settings.database_url.rsplit("/", 1)[1]
    assert TIMESTAMP.match(body["timestamp"])


async def test_ready(client):
    response = await client.get("/health/ready")
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"status", "timestamp", "checks"}
    assert body["status"] == "ready"
    assert body["checks"] == {"database": "ok", "application": "ok", "redis": "ok"}


async def test_live(client):
    response = await client.get("/health/live")
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"status", "timestamp", "uptime"}
    assert body["status"] == "alive"
    assert body["uptime"] == "application is running"


async def test_readiness_reports_shutdown(app, client):
    app.state.resources.shutting_down.set()
    response = await client.get("/health/ready")
    assert response.status_code == 503
    assert response.json()["checks"]["application"] == "failed"
    assert response.json()["error"] == "Application shutting down"


async def _wait_for_status(http, path: str, status: int, within: float = 30) -> dict:
    deadline = asyncio.get_running_loop().time() + within
    while True:
        response = await http.get(path)
        if response.status_code == status:
            return response.json()
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{path} still {response.status_code} after {within}s: {response.text}")
        await asyncio.sleep(0.2)


@pytest.fixture
async def outage_app(private_postgres, make_settings, make_user, login):
    """An app on a PostgreSQL server of the test's own (migrated, with a logged-in user), so the test can
    stop and start it without disturbing other tests."""
    import asyncpg
    from admin_api.auth.repository import insert_user
    from admin_api.auth.service import hash_password
    from admin_api.main import create_app
    from admin_api.migrations import upgrade

    server = await asyncio.to_thread(private_postgres)
    await asyncio.to_thread(server.create_database, "admin_db")
    await asyncio.to_thread(upgrade, server.url("admin_db"))
    conn = await asyncpg.connect(server.dsn("admin_db"))
    await insert_user(conn, username="carol", password_hash=hash_password("carol-password"), is_admin=False)
    await conn.close()

    app = create_app(make_settings(database_url=server.url("admin_db")))
    async with app.router.lifespan_context(app), client_for(app) as http:
        await login(http, "carol", "carol-password")
        yield server, http


async def test_readiness_follows_postgres_down_and_back_up_by_itself(outage_app):
    server, http = outage_app
    assert (await http.get("/health/ready")).status_code == 200
    assert (await http.post("/api/v1/history/list", json={})).status_code == 200

    await asyncio.to_thread(server.stop)

    ready = await _wait_for_status(http, "/health/ready", 503)
    assert set(ready) == {"status", "timestamp", "checks", "error"}
    assert ready["status"] == "not_ready"
    assert ready["checks"] == {"database": "failed", "application": "ok", "redis": "ok"}
    assert ready["error"] == "Database not available"

    db = await http.get("/health/db")
    assert db.status_code == 503
    body = db.json()
    assert set(body) == {"status", "database", "timestamp", "error"}
    assert (body["status"], body["database"], body["error"]) == (
        "unhealthy",
        "disconnected",
        "Database connection failed",
    )

    # Liveness never asks the database: a PostgreSQL outage must not get pods restarted.
    assert (await http.get("/health/live")).status_code == 200
    # An API call that needs the database is a clean 503, not a 500 with a trace.
    listing = await http.post("/api/v1/history/list", json={})
    assert listing.status_code == 503
    assert listing.json() == {"detail": "A backing service is temporarily unavailable; retry shortly."}
    assert listing.headers["retry-after"]

    await asyncio.to_thread(server.start)

    await _wait_for_status(http, "/health/ready", 200)
    assert (await http.get("/health/db")).status_code == 200
    assert (await http.post("/api/v1/history/list", json={})).status_code == 200


async def test_readiness_follows_redis_down_and_back_up(private_redis, make_settings, make_user, login):
    from admin_api.main import create_app

    redis_server = await asyncio.to_thread(private_redis)
    app = create_app(make_settings(redis_url=redis_server.url(0)))
    user = await make_user()
    async with app.router.lifespan_context(app), client_for(app) as http:
        await login(http, user.username, user.password)
        assert (await http.get("/health/ready")).status_code == 200

        await asyncio.to_thread(redis_server.stop)
        ready = await _wait_for_status(http, "/health/ready", 503)
        assert ready["checks"] == {"database": "ok", "application": "ok", "redis": "failed"}
        assert ready["error"] == "Redis not available"
        me = await http.get("/api/v1/auth/me")  # sessions live in Redis
        assert me.status_code == 503
        assert "Traceback" not in me.text

        await asyncio.to_thread(redis_server.start)
        await _wait_for_status(http, "/health/ready", 200)
