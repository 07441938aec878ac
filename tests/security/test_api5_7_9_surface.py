"""OWASP API5:2023 Broken Function Level Authorization, API7:2023 Server Side Request Forgery and API9:2023
Improper Inventory Management: what the service exposes, and to whom.

Decisions (documented here and in the report):
- There are no admin-only HTTP routes: administration (users, backups) is the `admin-api` CLI, run in the pod.
  `is_admin` is carried in the session but grants nothing over HTTP; a test holds the route table to that.
- /docs and /openapi.json stay public, as the README says ("OpenAPI at /docs"): they describe exactly the
  README's routes, nothing internal (/metrics is left out of the schema).
- /metrics is unauthenticated (Prometheus scrapes it in-cluster): it carries route templates and counts only,
  never ids, users or message text (checked below).
- No request field takes a URL or host: the LLM endpoint and model come from the environment only (API7).
"""

from __future__ import annotations

import re
from pathlib import Path

from tests.security.helpers import SEND

README = Path(__file__).resolve().parents[2] / "README.md"
FRAMEWORK_ROUTES = {"/docs", "/docs/oauth2-redirect", "/docs/assets/{name}", "/redoc", "/openapi.json"}


def _readme_endpoints() -> set[tuple[str, str]]:
    """(METHOD, path) from the README's "HTTP API" table: `GET /health`, `/health/db`, ... and `POST /a`, `/b`."""
    section = README.read_text().split("### HTTP API", 1)[1].split("\n### ", 1)[0]
    endpoints = set()
    for row in section.splitlines():
        if not row.startswith("| `"):
            continue
        first_cell = row.split(" | ")[0]
        method = None
        for code in re.findall(r"`([^`]*)`", first_cell):
            words = code.split()
            if words and words[0] in ("GET", "POST", "DELETE"):
                method, words = words[0], words[1:]
            if method and words and words[0].startswith("/"):
                path = words[0]
                if path != "/" and not path.startswith(("/api/", "/health", "/metrics", "/web/")):
                    path = "/api/v1/history" + path  # `/rename` after `POST /api/v1/history/detail`
                endpoints.add((method, path))
    return endpoints


def _flat_routes(routes, prefix: str = ""):
    """(full path, route) of every route, also those not in the schema, through included routers."""
    for route in routes:
        if hasattr(route, "original_router"):  # FastAPI's included router
            yield from _flat_routes(route.original_router.routes, prefix + route.include_context.prefix)
        else:
            yield prefix + route.path, route


def _app_endpoints(app) -> set[tuple[str, str]]:
    endpoints = set()
    for path, route in _flat_routes(app.routes):
        if path in FRAMEWORK_ROUTES:
            continue
        for method in getattr(route, "methods", ()) or ():
            if method != "HEAD":
                endpoints.add((method, path))
    assert endpoints, "no routes found: FastAPI's route structure changed"
    return endpoints


async def test_api9_routes_match_the_readme(app):
    documented = _readme_endpoints()
    assert ("POST", "/api/v1/history/rename") in documented and ("GET", "/health/live") in documented
    assert _app_endpoints(app) == documented


async def test_api9_schema_describes_exactly_the_public_api(client):
    schema = (await client.get("/openapi.json")).json()
    operations = {(m.upper(), p) for p, item in schema["paths"].items() for m in item}
    not_in_schema = {("GET", "/metrics"), ("GET", "/"), ("GET", "/web/{name}")}  # scraping and the web page
    assert operations == _readme_endpoints() - not_in_schema
    assert not any(re.search(r"test|debug|internal|admin|v0|v2", path) for _, path in operations)


async def test_api5_no_route_is_admin_only_and_none_is_reachable_without_a_session(app, client):
    for method, path in _app_endpoints(app):
        assert "admin" not in path.lower()
        if path.startswith("/api/") and path != "/api/v1/auth/login":
            response = await client.request(method, path, json={})
            assert response.status_code == 401, (method, path)


async def test_api5_is_admin_grants_nothing_extra(user_client, make_user, login, app, seed_conversation):
    """An admin's session is no key to other users' data either."""
    from tests.service.conftest import client_for

    victim_conversation = await seed_conversation(user_client.user.id, title="private")
    admin = await make_user(admin=True)
    async with client_for(app) as admin_client:
        await login(admin_client, admin.username, admin.password)
        assert (await admin_client.get("/api/v1/auth/me")).json()["is_admin"] is True
        response = await admin_client.post("/api/v1/history/detail", json={"cnvs_idt_id": victim_conversation})
        assert response.status_code == 404
        assert (await admin_client.post("/api/v1/history/list", json={})).json()["total"] == 0


async def test_api5_docs_are_public_and_reveal_nothing_internal(client):
    docs = await client.get("/docs")
    assert docs.status_code == 200
    schema = (await client.get("/openapi.json")).text
    for secret in ("USR_ID", "PWD_HASH", "DATABASE_URL", "REDIS_URL", "LLM_API_KEY", "postgresql", "redis://"):
        assert secret not in schema


async def test_api5_metrics_carry_no_identifiers(user_client, client):
    sent = await user_client.post(SEND, json={"message": "secret message text"})
    cnvs = sent.json()["cnvs_idt_id"]
    await client.get("/no/such/path/with-a-unique-token-123")
    metrics = (await client.get("/metrics")).text
    for leaked in (cnvs, "secret message", user_client.user.username, "unique-token-123"):
        assert leaked not in metrics


async def test_api7_no_request_field_takes_a_url(client):
    schema = (await client.get("/openapi.json")).json()
    for name, component in schema["components"]["schemas"].items():
        for field, spec in component.get("properties", {}).items():
            assert spec.get("format") not in ("uri", "url", "hostname", "ipv4", "ipv6"), (name, field)
            assert not re.search(r"url|uri|host|endpoint|callback|webhook|link", field, re.I), (name, field)


async def test_api7_the_llm_endpoint_and_model_cannot_be_chosen_by_the_client(user_client, openai_server, settings):
    for smuggled in ({"llm_endpoint": "http://169.254.169.254/latest/meta-data/"}, {"model": "other"},
                     {"base_url": "http://127.0.0.1:5432"}):
        response = await user_client.post(SEND, json={"message": "hi", **smuggled})
        assert response.status_code == 422
    # A URL in the message is only text: the service fetches nothing, the LLM gets the configured model.
    response = await user_client.post(SEND, json={"message": "summarise http://169.254.169.254/latest/meta-data/"})
    assert response.status_code == 200
    assert len(openai_server.chat_requests) == 1
    assert openai_server.chat_requests[0].model == settings.llm_model
