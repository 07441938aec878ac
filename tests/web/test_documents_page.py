"""The chat page's documents in a real headless Chromium, against a real `admin-api serve` with S3 (SeaweedFS),
embedded Qdrant and the real embedding model: upload with progress and status, the list, "use my documents",
the sources under an answer (also from history), delete, failures, and file names and text shown as text."""

from __future__ import annotations

import pytest
from selenium.webdriver.common.by import By

from tests.web.conftest import BROWSER_MISSING, DOCUMENTS_MAX_UPLOAD_BYTES, Page

if BROWSER_MISSING:
    pytest.skip(BROWSER_MISSING, allow_module_level=True)

pytestmark = pytest.mark.timeout(600)

FACT = "The launch code of project Falcon is BLUE-HARBOR-42."
NOTES = f"""# Project Falcon

Falcon is our internal project for moving the chat service to a new cluster.

{FACT} Only the on-call engineer may use it.

The migration window is Saturday night, and the rollback plan is to restore Friday's backup.
"""
INGESTION_WAIT = 120  # the real embedding model on a loaded CPU


def _login(page: Page, user) -> None:
    page.open()
    page.login(user.username, user.password)
    page.wait(lambda: page.visible("chat-view"), "chat")


def _wait_long(page: Page, condition, message: str):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(page.driver, INGESTION_WAIT, poll_frequency=0.2).until(lambda _: condition(), message)


def _answer_texts(page: Page) -> list[str]:
    return page.text_of("#messages > li.message.assistant")


async def test_documents_hidden_when_the_server_has_none(page, make_user):
    user = await make_user()
    _login(page, user)
    page.wait(lambda: page.status() == "", "no error")
    assert not page.visible("documents") and not page.visible("use-documents-switch")
