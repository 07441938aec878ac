"""Fixtures for the security suite: the service's own (a migrated database, settings, apps, users, logged-in
clients, the OpenAI-wire test LLM), re-exported so tests/security uses the very same real parts."""

from __future__ import annotations

import pytest

from tests.service.conftest import *  # noqa: F403  (fixtures: settings, app, client, make_user, login, ...)
from tests.service.conftest import ALLOWED_ORIGIN, BASE_URL, client_for  # noqa: F401


@pytest.fixture(autouse=True)
def _fresh_llm_script(openai_server):
    """Every test starts with the test LLM answering normally, and leaves it that way."""
    openai_server.reset()
    yield
    openai_server.reset()
