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


async def test_upload_ask_with_sources_reload_delete(documents_page, make_user, openai_server, tmp_path):
    page = documents_page
    user = await make_user()
    notes = tmp_path / "falcon-notes.md"
    notes.write_text(NOTES)
    answer = "The code is BLUE-HARBOR-42 [1]."
    openai_server.script(answer=answer)

    _login(page, user)
    page.wait(lambda: page.visible("documents") and page.visible("use-documents-switch"), "documents shown")
    assert page.documents() == []
    page.record_upload_statuses()
    page.upload(notes)
    _wait_long(page, lambda: page.documents()[:1] and page.documents()[0][1].startswith("Ready"), "ready")
    name, status = page.documents()[0]
    assert name == "falcon-notes.md" and status.startswith("Ready · 1 part · "), status
    statuses = page.upload_statuses()
    assert statuses[0] == "Uploading… 0%" and "Uploading… 100%" in statuses, statuses
    assert statuses[-1] == status  # the upload area follows the document to its end
    assert page.el("upload-status").text == status

    page.el("use-documents").click()
    page.send("What is the launch code of project Falcon?")
    page.wait(lambda: _answer_texts(page) == [answer], "answer")
    sources = page.text_of("#messages > li.sources")
    assert len(sources) == 1 and sources[0].startswith("Sources (1)[1] falcon-notes.md · part 1"), sources
    assert FACT in sources[0]
    prompt = " ".join(str(m["content"]) for m in openai_server.chat_requests[-1].messages)
    assert FACT in prompt  # the chunk shown is the chunk the model was given

    # The order on the page: question, answer, then its sources.
    classes = [item.get_attribute("class") for item in page.driver.find_elements(By.CSS_SELECTOR, "#messages > li")]
    assert classes == ["message user", "message assistant", "sources"]

    page.driver.refresh()  # the sources come back with the conversation (history/detail keeps them)
    page.wait(lambda: page.visible("chat-view") and len(page.titles()) == 1, "history")
    page.wait(lambda: page.documents()[:1], "the documents list, loaded after the history")
    assert page.documents()[0][0] == "falcon-notes.md"
    assert not page.el("use-documents").is_selected()  # a reload starts without documents
    page.driver.find_element(By.CSS_SELECTOR, "#conversations button").click()
    page.wait(lambda: len(page.text_of("#messages > li.sources")) == 1, "sources from history")
    assert FACT in page.text_of("#messages > li.sources")[0]

    page.driver.find_element(By.CSS_SELECTOR, "#document-list button").click()
    page.driver.switch_to.alert.accept()
    page.wait(lambda: page.documents() == [], "deleted")

    openai_server.script(answer="I do not know.")
    page.el("use-documents").click()
    page.send("And the launch code again?")
    page.wait(lambda: _answer_texts(page)[-1:] == ["I do not know."], "second answer")
    assert len(page.text_of("#messages > li.sources")) == 1  # only the first answer's
    prompt = " ".join(str(m["content"]) for m in openai_server.chat_requests[-1].messages[-1:])
    assert "BLUE-HARBOR-42" not in prompt  # a deleted document is never retrieved again
    assert page.csp_violations() == []


async def test_bad_uploads_are_explained_and_names_are_text(documents_page, make_user, tmp_path):
    page = documents_page
    user = await make_user()
    _login(page, user)
    page.wait(lambda: page.visible("documents"), "documents shown")

    binary = tmp_path / "looks-like-text.txt"
    binary.write_bytes(bytes(range(256)) * 64)  # not text, whatever its name says
    page.record_upload_statuses()
    page.upload(binary)
    page.wait(lambda: page.upload_statuses() and page.upload_statuses()[-1].startswith(("Not uploaded:", "Failed:")),
              "binary refused")
    assert "failed" in page.el("upload").get_attribute("class")

    too_big = tmp_path / "big.txt"
    too_big.write_text("many words " * (DOCUMENTS_MAX_UPLOAD_BYTES // 5))
    page.record_upload_statuses()
    page.upload(too_big)
    page.wait(lambda: page.upload_statuses() and page.upload_statuses()[-1].startswith("Not uploaded:"),
              "too big refused")
    last = page.upload_statuses()[-1]
    assert "large" in last or "size" in last or "limit" in last, last

    empty = tmp_path / "empty.md"
    empty.write_text("")
    page.record_upload_statuses()
    page.upload(empty)
    page.wait(lambda: page.upload_statuses() and page.upload_statuses()[-1].startswith(("Not uploaded:", "Failed:")),
              "empty file refused")

    nasty = tmp_path / '<img src=x onerror=alert(1)>.md'
    nasty.write_text("<script>alert(2)</script> Plain words about a nasty file name.")
    page.upload(nasty)
    _wait_long(page, lambda: any(name == nasty.name for name, _ in page.documents()),
               f"nasty name listed (upload status: {page.el('upload-status').text!r})")
    assert page.driver.find_elements(By.CSS_SELECTOR, "#document-list img, #document-list script") == []
    assert page.status() == ""  # upload problems are told in the upload area, not as page errors
    assert page.csp_violations() == []


async def test_documents_hidden_when_the_server_has_none(page, make_user):
    user = await make_user()
    _login(page, user)
    page.wait(lambda: page.status() == "", "no error")
    assert not page.visible("documents") and not page.visible("use-documents-switch")
