"""OWASP API8:2023 Security Misconfiguration: security headers on every response (errors and 404 included),
CORS only for configured origins, no stack traces or framework internals, TRACE/OPTIONS behaviour."""

from __future__ import annotations

import re

import pytest

from tests.security.helpers import HISTORY_LIST, SEND
from tests.service.conftest import ALLOWED_ORIGIN, client_for

HEADERS = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "strict-transport-security": "max-age=31536000; includeSubDomains",
    "referrer-policy": "strict-origin-when-cross-origin",
    "content-security-policy": "frame-ancestors 'none'",
}
TRACE_MARKERS = ("Traceback", 'File "', "asyncpg", "pydantic_core", "starlette", "line ")


def _assert_hardened(response) -> None:
    for name, value in HEADERS.items():
        assert response.headers.get(name) == value, (response.request.method, response.request.url, name)
    assert response.headers.get("x-request-id")
    assert "x-xss-protection" not in response.headers
    for marker in TRACE_MARKERS:
        assert marker not in response.text, (response.request.url, response.text[:300])


async def test_every_kind_of_response_is_hardened(client, user_client, settings):
    responses = {
        "200 health": await client.get("/health/live"),
        "200 docs": await client.get("/docs"),
        "200 openapi": await client.get("/openapi.json"),
        "200 api": await user_client.get("/api/v1/auth/me"),
        "200 stream": await user_client.post(SEND, json={"message": "hi", "stream": True}),
        "204 logout": None,
        "422 bad json": await user_client.post(SEND, content=b'{"message": ', headers={"Content-Type": "application/json"}),
        "400 bad utf-8": await user_client.post(SEND, content=b'{"message": "\xff\xfe"}', headers={"Content-Type": "application/json"}),
        "401": await client.post(HISTORY_LIST, json={}),
        "403 csrf": await user_client.post(HISTORY_LIST, json={}, headers={"Origin": "https://evil.example"}),
        "404 path": await client.get("/no/such/path"),
        "404 api path": await user_client.post("/api/v1/history/nope", json={}),
        "404 object": await user_client.post("/api/v1/history/detail", json={"cnvs_idt_id": "nope"}),
        "405": await client.get("/api/v1/auth/login"),
        "413": await user_client.post(SEND, content=b"a" * (settings.max_body_bytes + 1), headers={"Content-Type": "application/json"}),
        "415": await user_client.post(SEND, content=b"message=hi", headers={"Content-Type": "application/x-www-form-urlencoded"}),
        "422": await user_client.post(HISTORY_LIST, json={"page": "1; DROP"}),
        "422 not an object": await user_client.post(HISTORY_LIST, json=[1, 2]),
    }
    responses["204 logout"] = await user_client.post("/api/v1/auth/logout")
    for label, response in responses.items():
        assert str(response.status_code) == label.split()[0], (label, response.status_code, response.text[:200])
        _assert_hardened(response)
        if response.request.url.path.startswith("/api/"):
            assert "no-store" in response.headers["cache-control"], label
        if response.status_code >= 400:
            assert response.headers["content-type"] == "application/json"
            assert "detail" in response.json()


@pytest.mark.parametrize("method", ["TRACE", "TRACK", "PUT", "DELETE", "PATCH", "CONNECT"])
async def test_unexpected_methods_are_refused_without_echo(user_client, method):
    for path in ("/api/v1/auth/me", HISTORY_LIST, "/health"):
        response = await user_client.request(method, path, headers={"X-Echo-Me": "secret-header-value"})
        assert response.status_code in (403, 405), (method, path, response.status_code)
        assert "secret-header-value" not in response.text
        assert "admin_api_session" not in response.text
        _assert_hardened(response)


async def test_options_without_cors_preflight_is_not_special(client):
    response = await client.options(HISTORY_LIST)
    assert response.status_code == 405
    _assert_hardened(response)


async def test_cors_preflight_only_for_the_configured_origin(client):
    preflight = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type"}
    allowed = await client.options(HISTORY_LIST, headers={"Origin": ALLOWED_ORIGIN, **preflight})
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == ALLOWED_ORIGIN
    assert allowed.headers["access-control-allow-credentials"] == "true"
    for origin in ("https://evil.example", "null", ALLOWED_ORIGIN + ".evil.example", "http://chat.example.com",
                   "https://chat.example.com:8443"):
        refused = await client.options(HISTORY_LIST, headers={"Origin": origin, **preflight})
        assert refused.status_code == 400, origin
        assert "access-control-allow-origin" not in refused.headers, origin
    # A method or header we do not allow is not granted even to the allowed origin.
    odd = await client.options(HISTORY_LIST, headers={"Origin": ALLOWED_ORIGIN, "Access-Control-Request-Method": "PUT"})
    assert odd.status_code == 400


async def test_cors_simple_requests_reflect_only_the_configured_origin(user_client):
    evil = await user_client.get("/api/v1/auth/me", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in evil.headers
    assert evil.headers.get("access-control-allow-origin") != "*"
    good = await user_client.get("/api/v1/auth/me", headers={"Origin": ALLOWED_ORIGIN})
    assert good.headers["access-control-allow-origin"] == ALLOWED_ORIGIN


async def test_cross_site_writes_are_refused(user_client, openai_server):
    for headers in ({"Origin": "https://evil.example"}, {"Origin": "null"}, {"Sec-Fetch-Site": "cross-site"}):
        response = await user_client.post(SEND, json={"message": "hi"}, headers=headers)
        assert response.status_code == 403, headers
    assert openai_server.chat_requests == []


async def test_a_hostile_request_id_is_not_reflected(client):
    for bad in ("<script>", "a\r\nSet-Cookie: x=1", "x" * 500):
        response = await client.get("/health/live", headers={"X-Request-ID": bad.replace("\r\n", " ")})
        assert response.headers["x-request-id"] != bad
        assert "<" not in response.headers["x-request-id"] and len(response.headers["x-request-id"]) <= 128


async def test_session_cookie_flags(client, make_user):
    user = await make_user()
    response = await client.post("/api/v1/auth/login", json={"username": user.username, "password": user.password})
    cookie = response.headers["set-cookie"].lower()
    for flag in ("httponly", "secure", "samesite=lax", "path=/"):
        assert flag in cookie, cookie
    assert "domain=" not in cookie  # host-only: not shared with sibling subdomains


async def test_docs_load_nothing_from_outside_the_service(client):
    """FINDING (fixed): /docs and /redoc loaded Swagger UI, ReDoc and fonts from public CDNs (broken on a closed
    network, and a third party learns who reads our docs)."""
    for page in ("/docs", "/redoc"):
        response = await client.get(page)
        assert response.status_code == 200
        references = re.findall(r"""(?:src|href|url)\s*[=:(]\s*['"]([^'"]+)['"]""", response.text)
        assert references, page
        for reference in references:
            assert reference.startswith("/") and not reference.startswith("//"), (page, reference)
            if reference != "/openapi.json":
                asset = await client.get(reference)
                assert asset.status_code == 200 and asset.content, (page, reference)
        assert not re.search(r"https?://(?!127\.0\.0\.1)", response.text.replace("http://www.w3.org/", "")), page


async def test_docs_can_be_turned_off(make_settings):
    from admin_api.main import create_app

    app = create_app(make_settings(api_docs=False))
    async with client_for(app) as http:
        for page in ("/docs", "/redoc", "/docs/assets/swagger-ui-bundle.js"):
            assert (await http.get(page)).status_code == 404, page


async def test_head_is_answered_wherever_get_is(client, user_client):
    """FINDING (fixed): HEAD on GET routes was 405."""
    for http, path in ((client, "/health/live"), (client, "/health"), (client, "/"), (client, "/openapi.json"),
                       (client, "/metrics"), (user_client, "/api/v1/auth/me"), (client, "/web/app.js")):
        get = await http.get(path)
        head = await http.head(path)
        assert (head.status_code, get.status_code) == (200, 200), path
        assert head.content == b"", path
        for name in ("content-type", "content-security-policy", "x-frame-options", "cache-control"):
            assert head.headers.get(name) == get.headers.get(name), (path, name)
        if path != "/metrics":  # the metrics page changes with every request
            assert head.headers["content-length"] == get.headers["content-length"], path
    assert (await client.head("/api/v1/auth/me")).status_code == 401  # the same rules as GET
    assert (await client.head(HISTORY_LIST)).status_code == 405  # POST-only stays POST-only
