"""Configuration comes from the guide's environment variables; a bad one is named in one line."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from admin_api.settings import Settings, describe_config_error
from pydantic import ValidationError

REPO_ROOT = Path(__file__).resolve().parents[3]
VALID = {
    "DATABASE_URL": "postgresql+asyncpg://app:s3cret-pw@db.internal:5432/admin_db",
    "REDIS_URL": "redis://redis:6379",
    "LLM_ENDPOINT": "http://vllm:8000/v1",
    "LLM_MODEL": "my-model",
}
# The deployment guide's sample credentials: none may be a default anywhere.
GUIDE_SAMPLE_SECRETS = ["admin123", "QFy9YlRTm0Y1yo6D", "postgres:password@"]


@pytest.fixture
def environment(monkeypatch):
    """Only what the test sets: clear every variable Settings would read."""
    for name in list(os.environ):
        if name.lower() in Settings.model_fields:
            monkeypatch.delenv(name)

    def set_env(**values: str) -> None:
        for name, value in values.items():
            monkeypatch.setenv(name, value)

    return set_env


def _error_line(**env) -> str:
    with pytest.raises(ValidationError) as caught:
        Settings()
    return describe_config_error(caught.value)


def test_valid_environment(environment):
    environment(**VALID, CORS_ORIGINS="https://a.example, https://b.example:8443/", COOKIE_SECURE="false")
    settings = Settings()
    assert settings.asyncpg_dsn == "postgresql://app:s3cret-pw@db.internal:5432/admin_db"
    assert settings.database_name == "admin_db"
    assert settings.cors_origins == ["https://a.example", "https://b.example:8443"]
    assert settings.cookie_secure is False
    assert settings.llm_api_key is None
    assert "s3cret-pw" not in repr(settings)


def test_defaults_are_safe(environment):
    environment(**VALID)
    settings = Settings()
    assert settings.cookie_secure is True
    assert settings.cors_origins == []
    assert settings.max_body_bytes == 1024 * 1024
    assert settings.session_idle_seconds < settings.session_max_seconds


@pytest.mark.parametrize("missing", list(VALID))
def test_a_missing_variable_is_named(environment, missing):
    environment(**{name: value for name, value in VALID.items() if name != missing})
    assert _error_line() == f"{missing}: required environment variable is not set"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("DATABASE_URL", "postgresql://app:s3cret-pw@db:5432/admin_db"),  # not the guide's +asyncpg form
        ("DATABASE_URL", "postgresql+asyncpg://app:s3cret-pw@db:5432"),  # no database
        ("DATABASE_URL", "postgresql+asyncpg://app:s3cret-pw@db:54x2/admin_db"),  # a port that is no number
        ("DATABASE_URL", "postgresql+asyncpg://app:s3cret-pw@db:654321/admin_db"),  # a port out of range
        ("REDIS_URL", "http://redis:6379"),
        ("LLM_ENDPOINT", "not a url"),
        ("CORS_ORIGINS", "*"),
        ("CORS_ORIGINS", "chat.example.com"),
        ("COOKIE_SECURE", "maybe"),
        ("MAX_BODY_BYTES", "lots"),
        ("QDRANT_PORT", "99999"),
    ],
)
def test_a_malformed_variable_is_named_without_its_value(environment, name, value):
    environment(**{**VALID, name: value})
    line = _error_line()
    assert line.startswith(f"{name}: ")
    assert "\n" not in line
    assert "s3cret-pw" not in line


def test_cli_prints_one_line_and_exits_2():
    env = {"PATH": os.environ["PATH"], **VALID}
    del env["LLM_MODEL"]
    result = subprocess.run(
        [sys.executable, "-m", "admin_api.cli", "serve"], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert result.stderr == "admin-api: configuration error: LLM_MODEL: required environment variable is not set\n"


def test_no_guide_sample_credential_is_a_default_anywhere():
    sources = [*(REPO_ROOT / "service").rglob("*.py"), REPO_ROOT / "Dockerfile.service"]
    for path in sources:
        text = path.read_text()
        for secret in GUIDE_SAMPLE_SECRETS:
            assert secret not in text, f"{secret!r} in {path}"
    for name, field in Settings.model_fields.items():
        if re.search(r"url|key|password|secret", name):
            assert field.default is None or field.is_required(), name
