"""The chat page at `/` in a real headless Chromium: login, streamed answers, history, rename, delete,
reload, logout, errors, and the LLM's output rendered as text only."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest
from selenium.common.exceptions import NoAlertPresentException
from selenium.webdriver.common.by import By

from tests.web.conftest import BROWSER_MISSING, Page

if BROWSER_MISSING:
    pytest.skip(BROWSER_MISSING, allow_module_level=True)

XSS = "<img src=x onerror=alert(1)><script>alert(2)</script><b>bold</b>"


def _no_alert(page: Page) -> bool:
    try:
        page.driver.switch_to.alert
    except NoAlertPresentException:
        return True
    return False


async def test_login_stream_history_rename_delete_reload_logout(page, make_user, openai_server):
    user = await make_user()
    answer = "Streaming answers arrive piece by piece, as the model writes them."
    openai_server.script(answer=answer, chunk_delay=0.1)

    page.open()
    page.login(user.username, "wrong password")
    page.wait(lambda: page.status() == "Wrong username or password.", "401 on login")
    page.login(user.username, user.password)
    page.wait(lambda: page.visible("chat-view"), "chat after login")
    assert page.el("username").text == user.username
    assert page.status() == ""

    page.send("Tell me about streams")
    seen = set()  # the answer's text as it grew
    def answered() -> bool:
        messages = page.messages()
        if len(messages) == 2:
            seen.add(messages[1][1])
        return messages == [("message user", "Tell me about streams"), ("message assistant", answer)]
    page.wait(answered, "streamed answer")
    assert len({text for text in seen if text and text != answer}) >= 2, seen  # shown while it arrived
    page.wait(lambda: page.titles() == ["Tell me about streams"], "new conversation in the history")
    assert page.el("conversation-title").text == "Tell me about streams"

    page.el("rename").click()
    page.el("rename-title").clear()
    page.el("rename-title").send_keys("Renamed chat")
    page.driver.find_element(By.CSS_SELECTOR, "#rename-form button[type=submit]").click()
    page.wait(lambda: page.titles() == ["Renamed chat"], "renamed in the list")
    assert page.el("conversation-title").text == "Renamed chat"

    page.driver.refresh()  # the HttpOnly session cookie keeps us logged in
    page.wait(lambda: page.visible("chat-view") and page.titles() == ["Renamed chat"], "still logged in")
    assert page.messages() == []  # a reload starts on a new conversation
    page.driver.find_element(By.CSS_SELECTOR, "#conversations button").click()
    page.wait(lambda: len(page.messages()) == 2, "conversation opened")
    assert page.messages()[1] == ("message assistant", answer)

    page.el("delete").click()
    page.driver.switch_to.alert.accept()
    page.wait(lambda: page.titles() == [], "deleted")
    assert page.el("conversation-title").text == "New conversation"

    page.el("logout").click()
    page.wait(lambda: page.visible("login-view"), "logged out")
    assert page.status() == "You are logged out."
    page.driver.refresh()
    page.wait(lambda: page.visible("login-view"), "still logged out after reload")
    assert not page.visible("chat-view")
    assert page.csp_violations() == []


async def test_llm_output_is_rendered_as_text(page, make_user, openai_server):
    user = await make_user()
    openai_server.script(answer=XSS)
    page.open()
    page.login(user.username, user.password)
    page.wait(lambda: page.visible("chat-view"), "chat")
    page.send("say something nasty")
    page.wait(lambda: page.messages()[-1:] == [("message assistant", XSS)], "answer shown as text")

    page.driver.refresh()  # and again from history/detail
    page.wait(lambda: page.titles() == ["say something nasty"], "history")
    page.driver.find_element(By.CSS_SELECTOR, "#conversations button").click()
    page.wait(lambda: page.messages()[-1:] == [("message assistant", XSS)], "stored answer shown as text")

    assert page.driver.find_elements(By.CSS_SELECTOR, "#messages img, #messages script, #messages b") == []
    assert page.driver.find_elements(By.TAG_NAME, "img") == []
    assert _no_alert(page)


async def test_history_pages_newest_first_with_more(page, make_user, seed_conversation):
    user = await make_user()
    start = datetime.now(UTC) - timedelta(days=1)
    for number in range(23):
        await seed_conversation(user.id, title=f"Conversation {number:02}", reg_dt=start + timedelta(minutes=number))
    page.open()
    page.login(user.username, user.password)
    page.wait(lambda: len(page.titles()) == 20, "first page")
    assert page.titles() == [f"Conversation {n:02}" for n in range(22, 2, -1)]
    assert page.visible("more")
    page.el("more").click()
    page.wait(lambda: len(page.titles()) == 23, "second page")
    assert page.titles()[20:] == ["Conversation 02", "Conversation 01", "Conversation 00"]
    assert not page.visible("more")


async def test_a_long_conversation_opens_on_its_newest_page_with_earlier_on_demand(page, make_user, seed_conversation):
    user = await make_user()
    turns = [("user" if n % 2 == 0 else "assistant", f"Message {n:03}") for n in range(130)]
    await seed_conversation(user.id, title="Long chat", messages=turns)
    page.open()
    page.login(user.username, user.password)
    page.wait(lambda: page.titles() == ["Long chat"], "history")
    assert not page.visible("earlier")
    page.driver.find_element(By.CSS_SELECTOR, "#conversations button").click()
    # history/detail's first page: the newest 100, oldest first.
    page.wait(lambda: len(page.text_of("#messages > li")) == 100, "newest page")
    assert page.text_of("#messages > li") == [text for _, text in turns[30:]]
    assert page.visible("earlier")
    page.el("earlier").click()
    page.wait(lambda: len(page.text_of("#messages > li")) == 130, "earlier page")
    assert page.text_of("#messages > li") == [text for _, text in turns]  # each once, in order
    assert not page.visible("earlier")

    page.el("new-chat").click()
    assert page.text_of("#messages > li") == [] and not page.visible("earlier")


async def test_errors_are_explained(page, make_user, openai_server):
    user = await make_user()
    page.open()
    page.login(user.username, user.password)
    page.wait(lambda: page.visible("chat-view"), "chat")

    openai_server.queue(status=503)
    page.send("are you there?")
    page.wait(lambda: page.status().startswith("The assistant is unavailable (50"), "LLM failure explained")
    assert page.status().endswith("Your message is saved; you can send it again."), page.status()
    assert page.messages()[-1][0] == "message assistant failed"
    page.wait(lambda: page.titles() == ["are you there?"], "the user's message is stored")

    page.driver.delete_all_cookies()  # the session is gone: the next call is a 401
    page.el("new-chat").click()
    page.send("hello again")
    page.wait(lambda: page.visible("login-view"), "back to login on 401")
    assert page.status() == "Your session has ended. Please log in again."

    for _ in range(12):  # repeated failed logins: 429 with Retry-After
        page.login(user.username, "wrong password")
        page.wait(lambda: page.status() != "", "login answered")
        if page.status().startswith("Too many"):
            break
    page.wait(lambda: page.status().startswith("Too many requests."), "429 explained")
    assert "Try again in" in page.status(), page.status()


async def test_page_headers(server):
    async with httpx.AsyncClient(base_url=server) as http:
        page = await http.get("/")
        script = await http.get("/web/app.js")
        me = await http.get("/api/v1/auth/me")
        missing = await http.get("/web/nope.js")
    assert page.status_code == 200 and page.headers["content-type"] == "text/html; charset=utf-8"
    csp = page.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp
    assert "<script>" not in page.text and "style=" not in page.text  # nothing inline
    assert script.headers["content-type"] == "text/javascript; charset=utf-8"
    for response in (page, script):
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["x-frame-options"] == "DENY"
        assert "no-store" not in response.headers["cache-control"]
    assert me.status_code == 401 and me.headers["cache-control"] == "no-store"
    assert me.headers["content-security-policy"] == "frame-ancestors 'none'"
    assert missing.status_code == 404
