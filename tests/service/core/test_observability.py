"""JSON logs with request ids (and no secrets in them); Prometheus metrics."""

from __future__ import annotations

import io
import json
import logging

import pytest
from admin_api.auth.dependencies import SESSION_COOKIE
from admin_api.auth.sessions import hash_session_id
from admin_api.core.logging import json_handler


@pytest.fixture
def json_logs():
    """Everything logged while the test runs, as our JSON handler writes it."""
    stream = io.StringIO()
    handler = json_handler(stream)
    root = logging.getLogger()
    previous_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    yield stream
    root.removeHandler(handler)
    root.setLevel(previous_level)


async def test_login_leaves_no_password_or_cookie_in_the_logs(client, make_user, seed_conversation, json_logs, caplog):
    caplog.set_level(logging.DEBUG)
    user = await make_user(password="Very-Distinctive-Passw0rd")
    await client.post("/api/v1/auth/login", json={"username": user.username, "password": "Wrong-Distinctive-Passw0rd"})
    login = await client.post("/api/v1/auth/login", json={"username": user.username, "password": user.password})
    session_id = client.cookies[SESSION_COOKIE]
    cnvs_idt_id = await seed_conversation(user.id, messages=[("user", "Distinctive message text 4711")])
    await client.post("/api/v1/history/detail", json={"cnvs_idt_id": cnvs_idt_id})
    await client.post("/api/v1/auth/logout")
    assert login.status_code == 200

    logged = json_logs.getvalue() + caplog.text
    assert "request" in logged  # the request log did run
    for secret in (
        user.password,
        "Wrong-Distinctive-Passw0rd",
        session_id,
        hash_session_id(session_id),
        "Distinctive message text 4711",
    ):
        assert secret not in logged


async def test_request_log_lines_are_json_with_the_request_id(client, json_logs):
    response = await client.get("/api/v1/auth/me", headers={"X-Request-ID": "trace-abc.123"})
    assert response.headers["x-request-id"] == "trace-abc.123"
    lines = [json.loads(line) for line in json_logs.getvalue().splitlines()]
    request_lines = [line for line in lines if line["logger"] == "admin_api.request"]
    assert request_lines[-1] | {"duration_ms": 0, "timestamp": ""} == {
        "level": "INFO",
        "logger": "admin_api.request",
        "message": "request",
        "request_id": "trace-abc.123",
        "method": "GET",
        "path": "/api/v1/auth/me",
        "route": "/api/v1/auth/me",
        "status": 401,
        "duration_ms": 0,
        "timestamp": "",
    }


async def test_request_ids_are_made_when_missing_or_unsafe(client):
    made = await client.get("/health/live")
    assert len(made.headers["x-request-id"]) == 32
    unsafe = await client.get("/health/live", headers={"X-Request-ID": "bad id\nwith newline" + "x" * 200})
    assert unsafe.headers["x-request-id"] != "bad id"
    assert len(unsafe.headers["x-request-id"]) == 32


async def test_metrics(client, user_client):
    await user_client.post("/api/v1/history/list", json={})
    await user_client.post("/api/v1/history/list", json={"page": 0})
    await client.get("/no/such/page/12345")
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert 'http_requests_total{method="POST",route="/api/v1/history/list",status="200"} 1.0' in text
    assert 'http_requests_total{method="POST",route="/api/v1/history/list",status="422"} 1.0' in text
    assert 'route="<unmatched>",status="404"' in text  # unknown paths do not each get a label
    assert "12345" not in text
    assert 'http_request_duration_seconds_bucket{le="0.005",method="POST",route="/api/v1/history/list"}' in text
    assert "# TYPE http_request_errors_total counter" in text
    assert "# TYPE llm_request_duration_seconds histogram" in text


async def test_errors_are_counted(app, client):
    async def bug():
        raise RuntimeError("boom")

    app.add_api_route("/test/bug", bug, methods=["GET"])
    assert (await client.get("/test/bug")).status_code == 500
    text = (await client.get("/metrics")).text
    assert 'http_request_errors_total{method="GET",route="/test/bug"} 1.0' in text
