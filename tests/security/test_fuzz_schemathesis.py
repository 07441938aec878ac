"""schemathesis against our own OpenAPI schema, in-process over ASGI, with the real PostgreSQL, Redis and
OpenAI-wire LLM behind the app.

Each operation is fuzzed with schema-conforming (positive) and schema-violating (negative) input, twice:
without a session (every protected operation must be a clean 401; login must hold up against anything) and
with a logged-in session cookie (the handlers themselves get fuzzed). No Origin header and JSON bodies, as a
non-browser client sends, so the CSRF rules let the requests through to the handlers.

Checks on every response: never a 5xx, and schemathesis' conformance checks (status code documented, content
type, headers, body matching the response schema; negative input rejected with a 4xx).
Bounded: 25 examples per operation and mode, derandomized, no deadline.

(schemathesis' own pytest loader, `from_fixture(...).parametrize()`, does not work with pytest 9 yet, so the
operations are parametrized here and each one's strategy is driven by hypothesis directly.)
"""

from __future__ import annotations

import uuid

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance

from admin_api.auth.dependencies import SESSION_COOKIE
from admin_api.main import create_app
from tests.service.conftest import IsolatedSettings

MAX_EXAMPLES = 25
# Operations that end or replace the fuzzing session itself: fuzzed without a session only.
SESSION_CHANGING = {("POST", "/api/v1/auth/logout"), ("POST", "/api/v1/auth/login")}

FUZZ_SETTINGS = settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)


def _documented_operations() -> list[tuple[str, str, bool]]:
    """(METHOD, path, takes input) of every operation in the schema; building the app connects to nothing."""
    offline = IsolatedSettings(
        database_url="postgresql+asyncpg://u:p@127.0.0.1:1/db",
        redis_url="redis://127.0.0.1:1",
        llm_endpoint="http://127.0.0.1:1/v1",
        llm_model="m",
    )
    paths = create_app(offline).openapi()["paths"]
    return sorted(
        (method.upper(), path, bool(op.get("parameters") or op.get("requestBody")))
        for path, item in paths.items()
        for method, op in item.items()
    )


def _cases(operations, *, authenticated: bool) -> list:
    """One case per operation and generation mode; negative only where there is input to get wrong."""
    cases = []
    for method, path, takes_input in operations:
        if authenticated and ((method, path) in SESSION_CHANGING or path.startswith("/health")):
            continue
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE) if takes_input else (GenerationMode.POSITIVE,):
            cases.append(pytest.param(method, path, mode, id=f"{method} {path} {mode.value}"))
    return cases


OPERATIONS = _documented_operations()


@pytest.fixture
def fuzz_settings(make_settings, openai_server, s3_server, tmp_path):
    """With documents on (the session's S3 server, an embedded index of the test's own), so their routes
    are fuzzed too."""
    return make_settings(
        minio_endpoint=s3_server.endpoint,
        minio_access_key=s3_server.access_key,
        minio_secret_key=s3_server.secret_key,
        minio_bucket=f"fuzz-{uuid.uuid4().hex[:12]}",
        minio_secure=s3_server.secure,
        qdrant_path=str(tmp_path / "qdrant"),
        embedding_model_endpoint=openai_server.url,
        embedding_model="test-embed",
    )


@pytest.fixture
def fuzz_schema(fuzz_settings, openai_server):
    # A fresh app: schemathesis runs its lifespan on its own event-loop thread (ended after each test).
    schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(fuzz_settings))
    schema.config.generation.update(max_examples=MAX_EXAMPLES, deterministic=True, allow_x00=True)
    return schema


@pytest.fixture
def session_cookie(user_client) -> str:
    """A live session (in the shared Redis) of a fresh user, valid for any app instance."""
    return user_client.cookies[SESSION_COOKIE]


def _fuzz(schema, method: str, path: str, mode: GenerationMode, cookies: dict[str, str] | None) -> None:
    operation = schema[path][method]
    # Valid input may still be refused (401 without a session, 404 for a random conversation id, 429 once a
    # username is throttled): "positive data must be accepted" does not hold for this API, the rest does.
    excluded = [positive_data_acceptance]

    @FUZZ_SETTINGS
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case) -> None:
        response = case.call(cookies=cookies)
        assert response.status_code < 500, (case.as_curl_command(), response.status_code, response.text[:500])
        case.validate_response(response, excluded_checks=excluded)

    run()


@pytest.mark.parametrize(("method", "path", "mode"), _cases(OPERATIONS, authenticated=False))
def test_fuzz_without_session(fuzz_schema, method, path, mode):
    _fuzz(fuzz_schema, method, path, mode, cookies=None)


@pytest.mark.parametrize(("method", "path", "mode"), _cases(OPERATIONS, authenticated=True))
def test_fuzz_with_session(fuzz_schema, session_cookie, openai_server, method, path, mode):
    _fuzz(fuzz_schema, method, path, mode, cookies={SESSION_COOKIE: session_cookie})
    if (method, path, mode) == ("POST", "/api/v1/chat/send", GenerationMode.POSITIVE):
        assert openai_server.chat_requests, "no fuzzed send reached the LLM: the handler was not exercised"
