"""Security headers, CSRF and CORS, body limits, error bodies: what every response promises."""

from __future__ import annotations

import asyncpg
import pytest
from admin_api.main import create_app

from tests.service.conftest import ALLOWED_ORIGIN, client_for

GUIDE_HEADERS = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "strict-transport-security": "max-age=31536000; includeSubDomains",
    "referrer-policy": "strict-origin-when-cross-origin",
    "content-security-policy": "frame-ancestors 'none'",
}


@pytest.fixture
async def failing_app(app):
    """The app plus routes that fail the ways real code can."""

    async def bug():
        raise RuntimeError("internal detail: /srv/secret.py line 42")

    async def database_gone():
        raise asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed in the middle of operation")

    app.add_api_route("/api/v1/test/bug", bug, methods=["GET"])
    app.add_api_route("/api/v1/test/database-gone", database_gone, methods=["GET"])
    return app


def _assert_guide_headers(response) -> None:
    for name, value in GUIDE_HEADERS.items():
        assert response.headers.get(name) == value, (name, response.status_code, response.url)


async def test_security_headers_on_every_kind_of_response(failing_app, user_client, client):
    responses = [
        await client.get("/health/live"),
        await client.get("/metrics"),
        await client.get("/no/such/path"),
        await client.get("/api/v1/auth/me"),  # 401
        await user_client.post("/api/v1/history/list", json={"page": 0}),  # 422
        await user_client.get("/api/v1/test/bug"),  # 500
        await user_client.get("/api/v1/test/database-gone"),  # 503
        await client.post("/api/v1/auth/login", json={}, headers={"Origin": "https://evil.example"}),  # 403
    ]
    for response in responses:
        _assert_guide_headers(response)
        assert response.headers["x-request-id"]
    assert [r.status_code for r in responses] == [200, 200, 404, 401, 422, 500, 503, 403]


async def test_api_responses_are_not_cached(user_client):
    for response in (
        await user_client.get("/api/v1/auth/me"),
        await user_client.post("/api/v1/history/list", json={}),
        await user_client.post("/api/v1/history/detail", json={"cnvs_idt_id": "missing"}),
    ):
        assert response.headers["cache-control"] == "no-store"


async def test_unhandled_errors_are_json_without_internals(failing_app, user_client):
    bug = await user_client.get("/api/v1/test/bug")
    assert bug.status_code == 500
    assert bug.json() == {"detail": "Internal server error."}
    gone = await user_client.get("/api/v1/test/database-gone")
    assert gone.status_code == 503
    assert gone.json() == {"detail": "A backing service is temporarily unavailable; retry shortly."}
    for response in (bug, gone):
        assert "Traceback" not in response.text
        assert "secret.py" not in response.text and "connection was closed" not in response.text


async def test_validation_errors_say_what_without_echoing_input(client):
    response = await client.post("/api/v1/auth/login", json={"username": "bob", "password": "p" * 2000})
    assert response.status_code == 422
    assert response.json() == {
        "detail": [
            {
                "loc": ["body", "password"],
                "msg": "String should have at most 1024 characters",
                "type": "string_too_long",
            }
        ]
    }
    malformed = await client.post(
        "/api/v1/auth/login", content=b'{"username": "bob", "pass', headers={"Content-Type": "application/json"}
    )
    assert malformed.status_code == 422
    assert malformed.json()["detail"][0]["type"] == "json_invalid"


# --- CSRF and CORS ---


async def test_cross_site_writes_are_refused(user_client):
    for headers in (
        {"Origin": "https://evil.example"},
        {"Origin": "null"},
        {"Origin": "https://chat.example.com.evil.example"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},
        {"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"},
    ):
        response = await user_client.post("/api/v1/history/list", json={}, headers=headers)
        assert response.status_code == 403, headers
        assert response.json() == {"detail": "Cross-site request refused."}


async def test_login_itself_is_protected_from_cross_site_posts(client, make_user):
    user = await make_user()
    response = await client.post(
        "/api/v1/auth/login",
        json={"username": user.username, "password": user.password},
        headers={"Origin": "https://evil.example"},
    )
    assert response.status_code == 403
    assert "set-cookie" not in response.headers


async def test_allowed_same_origin_and_non_browser_writes_pass(user_client):
    for headers in (
        {},  # curl, the guide's smoke tests: no Origin, no Sec-Fetch-Site
        {"Origin": ALLOWED_ORIGIN, "Sec-Fetch-Site": "cross-site"},
        {"Origin": "https://testserver", "Sec-Fetch-Site": "same-origin"},  # a page we served ourselves
        {"Sec-Fetch-Site": "same-origin"},
        {"Sec-Fetch-Site": "none"},  # typed by the user
    ):
        response = await user_client.post("/api/v1/history/list", json={}, headers=headers)
        assert response.status_code == 200, headers


async def test_cors_only_for_configured_origins(user_client):
    allowed = await user_client.post("/api/v1/history/list", json={}, headers={"Origin": ALLOWED_ORIGIN})
    assert allowed.headers["access-control-allow-origin"] == ALLOWED_ORIGIN
    assert allowed.headers["access-control-allow-credentials"] == "true"

    preflight = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type"}
    ok = await user_client.options("/api/v1/history/list", headers={"Origin": ALLOWED_ORIGIN, **preflight})
    assert ok.status_code == 200
    assert ok.headers["access-control-allow-origin"] == ALLOWED_ORIGIN
    assert ok.headers["access-control-allow-credentials"] == "true"

    refused = await user_client.options("/api/v1/history/list", headers={"Origin": "https://evil.example", **preflight})
    assert refused.status_code == 400
    assert "access-control-allow-origin" not in refused.headers


async def test_allowed_pages_can_read_refusals_and_errors(failing_app, user_client):
    """CORS sits outside our middleware: its headers are on our own refusals and errors too, so an allowed page
    can read what went wrong and the request id to report."""
    allowed = {"Origin": ALLOWED_ORIGIN}
    responses = [
        await user_client.post("/api/v1/history/list", content=b"{}", headers={**allowed, "Content-Type": "text/plain"}),
        await user_client.get("/api/v1/test/bug", headers=allowed),
        await user_client.get("/api/v1/test/database-gone", headers=allowed),
    ]
    assert [response.status_code for response in responses] == [415, 500, 503]
    for response in responses:
        assert response.headers["access-control-allow-origin"] == ALLOWED_ORIGIN
        exposed = {name.strip().lower() for name in response.headers["access-control-expose-headers"].split(",")}
        assert "x-request-id" in exposed and response.headers["x-request-id"]
        _assert_guide_headers(response)


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", None]
)
async def test_write_bodies_must_be_json(user_client, content_type):
    headers = {"Content-Type": content_type} if content_type else {}
    response = await user_client.post("/api/v1/history/list", content=b'{"page": 1}', headers=headers)
    assert response.status_code == 415
    assert response.json() == {"detail": "Request body must be application/json."}


async def test_json_with_charset_and_bodyless_writes_pass(user_client):
    response = await user_client.post(
        "/api/v1/history/list", content=b"{}", headers={"Content-Type": "application/json; charset=utf-8"}
    )
    assert response.status_code == 200
    assert (await user_client.post("/api/v1/auth/logout")).status_code == 204


# --- body size ---


@pytest.fixture
async def small_body_client(make_settings, make_user, login):
    app = create_app(make_settings(max_body_bytes=2048))
    user = await make_user()
    async with app.router.lifespan_context(app), client_for(app) as http:
        await login(http, user.username, user.password)
        yield http


async def test_declared_oversized_body_is_413(small_body_client):
    response = await small_body_client.post("/api/v1/history/list", json={"cursor": "x" * 4096})
    assert response.status_code == 413
    assert response.json() == {"detail": "Request body too large."}
    _assert_guide_headers(response)


async def test_streamed_oversized_body_is_413(small_body_client):
    async def chunks():
        yield b'{"cursor": "'
        for _ in range(10):
            yield b"x" * 512

    response = await small_body_client.post(
        "/api/v1/history/list", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert "content-length" not in response.request.headers  # really streamed (chunked)
    assert response.status_code == 413
    assert response.json() == {"detail": "Request body too large."}


async def test_body_under_the_limit_passes(small_body_client):
    response = await small_body_client.post("/api/v1/history/list", json={"page": 1, "page_size": 5})
    assert response.status_code == 200
