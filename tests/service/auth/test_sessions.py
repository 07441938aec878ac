"""Login, the session cookie and the server-side session in Redis."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from http.cookies import SimpleCookie

import pytest
from admin_api.auth.dependencies import SESSION_COOKIE

from tests.service.conftest import client_for


def _set_cookie(response) -> SimpleCookie:
    cookie = SimpleCookie()
    cookie.load(response.headers["set-cookie"])
    return cookie


def _use_session_cookie(client, value: str) -> None:
    """Make the client send exactly this session cookie (httpx files host-only cookies under 'testserver.local')."""
    client.cookies.clear()
    client.cookies.set(SESSION_COOKIE, value, domain="testserver.local")


async def test_login_sets_a_hardened_session_cookie(client, make_user):
    user = await make_user()
    response = await client.post("/api/v1/auth/login", json={"username": user.username, "password": user.password})
    assert response.status_code == 200
    assert response.json() == {"id": user.id, "username": user.username, "is_admin": False}
    morsel = _set_cookie(response)[SESSION_COOKIE]
    assert morsel["httponly"] is True
    assert morsel["secure"] is True
    assert morsel["samesite"].lower() == "lax"
    assert morsel["path"] == "/"
    assert len(morsel.value) >= 43  # 256 bits, base64url


async def test_cookie_secure_false_for_local_http(make_settings, make_user, login):
    from admin_api.main import create_app

    app = create_app(make_settings(cookie_secure=False))
    user = await make_user()
    async with app.router.lifespan_context(app), client_for(app) as http:
        response = await login(http, user.username, user.password)
    assert _set_cookie(response)[SESSION_COOKIE]["secure"] == ""


async def test_me_and_logout(client, make_user, login):
    user = await make_user(admin=True)
    await login(client, user.username, user.password)
    me = await client.get("/api/v1/auth/me")
    assert me.status_code == 200
    assert me.json() == {"id": user.id, "username": user.username, "is_admin": True}
    assert me.headers["cache-control"] == "no-store"

    session_cookie = client.cookies[SESSION_COOKIE]
    logout = await client.post("/api/v1/auth/logout")
    assert logout.status_code == 204
    assert "Max-Age=0" in logout.headers["set-cookie"] or "expires=" in logout.headers["set-cookie"].lower()

    # The session is gone on the server, not just forgotten by this client.
    _use_session_cookie(client, session_cookie)
    assert (await client.get("/api/v1/auth/me")).status_code == 401


async def test_redis_holds_only_the_hash_of_the_session_id(client, make_user, login, redis, settings):
    user = await make_user()
    await login(client, user.username, user.password)
    session_id = client.cookies[SESSION_COOKIE]
    assert await redis.get(f"session:{session_id}") is None
    stored = await redis.get(f"session:{hashlib.sha256(session_id.encode()).hexdigest()}")
    assert json.loads(stored)["user_id"] == user.id
    assert session_id not in stored


async def test_login_rotates_the_session_id(client, make_user, login):
    user = await make_user()
    await login(client, user.username, user.password)
    first = client.cookies[SESSION_COOKIE]
    await login(client, user.username, user.password)
    second = client.cookies[SESSION_COOKIE]
    assert first != second
    # The id from before the login (e.g. one planted by an attacker) no longer works.
    _use_session_cookie(client, first)
    assert (await client.get("/api/v1/auth/me")).status_code == 401


async def test_idle_expiry_is_enforced_by_the_server(make_settings, make_user, login):
    from admin_api.main import create_app

    # model_copy skips validation: a one-second idle timeout only a test would want.
    app = create_app(make_settings().model_copy(update={"session_idle_seconds": 1}))
    user = await make_user()
    async with app.router.lifespan_context(app), client_for(app) as http:
        await login(http, user.username, user.password)
        assert (await http.get("/api/v1/auth/me")).status_code == 200
        await asyncio.sleep(1.5)
        assert (await http.get("/api/v1/auth/me")).status_code == 401


async def test_use_renews_the_idle_timer(client, make_user, login, redis, settings):
    user = await make_user()
    await login(client, user.username, user.password)
    key = "session:" + hashlib.sha256(client.cookies[SESSION_COOKIE].encode()).hexdigest()
    await redis.expire(key, 5)
    assert (await client.get("/api/v1/auth/me")).status_code == 200
    assert await redis.ttl(key) > 5
    assert await redis.ttl(key) <= settings.session_idle_seconds


async def test_absolute_expiry_is_enforced_by_the_server(client, make_user, login, redis, settings):
    user = await make_user()
    await login(client, user.username, user.password)
    key = "session:" + hashlib.sha256(client.cookies[SESSION_COOKIE].encode()).hexdigest()
    record = json.loads(await redis.get(key))
    record["created_at"] = time.time() - settings.session_max_seconds - 1  # an active but too old session
    await redis.set(key, json.dumps(record), keepttl=True)
    assert (await client.get("/api/v1/auth/me")).status_code == 401
    assert await redis.get(key) is None


async def test_wrong_password_and_unknown_user_look_the_same(client, make_user, monkeypatch):
    from admin_api.auth import service

    verified: list[str] = []
    real_verify = service._verify
    monkeypatch.setattr(service, "_verify", lambda h, p: verified.append(h) or real_verify(h, p))

    user = await make_user()
    wrong = await client.post("/api/v1/auth/login", json={"username": user.username, "password": "not-it"})
    unknown = await client.post("/api/v1/auth/login", json={"username": "nobody-here", "password": "not-it"})
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json() == unknown.json() == {"detail": "Invalid username or password."}
    assert "set-cookie" not in wrong.headers
    # The unknown user still cost a full argon2 verification (against a dummy hash): no timing oracle.
    assert len(verified) == 2
    assert all(h.startswith("$argon2id$") for h in verified)


async def test_repeated_failures_are_rate_limited(app, client, make_user, settings):
    user = await make_user()
    for _ in range(settings.login_max_failures):
        response = await client.post("/api/v1/auth/login", json={"username": user.username, "password": "wrong"})
        assert response.status_code == 401
    limited = await client.post("/api/v1/auth/login", json={"username": user.username, "password": user.password})
    assert limited.status_code == 429  # even the right password, until the window ends
    assert 0 < int(limited.headers["retry-after"]) <= settings.login_failure_window_seconds
    assert limited.json() == {"detail": "Too many failed logins; try again later."}

    # Counted per username and client address: the same user from elsewhere can still log in.
    async with client_for(app, client_ip="10.1.2.3") as elsewhere:
        ok = await elsewhere.post("/api/v1/auth/login", json={"username": user.username, "password": user.password})
        assert ok.status_code == 200


async def test_success_resets_the_failure_count(client, make_user, login, settings):
    user = await make_user()
    for _ in range(settings.login_max_failures - 1):
        await client.post("/api/v1/auth/login", json={"username": user.username, "password": "wrong"})
    await login(client, user.username, user.password)
    for _ in range(settings.login_max_failures - 1):
        await client.post("/api/v1/auth/login", json={"username": user.username, "password": "wrong"})
    await login(client, user.username, user.password)


async def test_every_api_route_but_login_needs_a_session(app, client):
    paths = {path: ops for path, ops in app.openapi()["paths"].items() if path.startswith("/api/v1/")}
    assert set(paths) >= {"/api/v1/auth/me", "/api/v1/history/list", "/api/v1/chat/send"}
    for path, operations in paths.items():
        if path == "/api/v1/auth/login":
            continue
        for method in operations:
            response = await client.request(method.upper(), path, json={})
            assert response.status_code == 401, (method, path, response.text)
            assert response.json()["detail"] == "Not authenticated."


async def test_a_forged_session_cookie_is_refused(client):
    _use_session_cookie(client, "x" * 43)
    assert (await client.get("/api/v1/auth/me")).status_code == 401
    _use_session_cookie(client, "y" * 5000)
    assert (await client.get("/api/v1/auth/me")).status_code == 401


async def test_login_validation(client):
    response = await client.post("/api/v1/auth/login", json={"username": "a", "password": "b", "remember": True})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "remember"]
    missing = await client.post("/api/v1/auth/login", json={"username": "a"})
    assert missing.status_code == 422
    assert missing.json()["detail"][0]["loc"] == ["body", "password"]
