"""The chat page in a real headless Chromium (selenium + Debian's chromedriver) against a real
`admin-api serve` with PostgreSQL, Redis and the test LLM server.

Skipped when /usr/bin/chromium or /usr/bin/chromedriver is missing (`apt-get install chromium chromium-driver`).
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from tests.service.conftest import database_url, db, make_user, seed_conversation  # noqa: F401  (fixtures)
from tests.support.serve import serving

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")

BROWSER_MISSING = "" if CHROMIUM.exists() and CHROMEDRIVER.exists() else (
    "tests/web need /usr/bin/chromium and /usr/bin/chromedriver: apt-get install chromium chromium-driver"
)

WAIT_SECONDS = 15


@pytest.fixture
def server(tmp_path, database_url, redis_url, openai_server) -> Iterator[str]:  # noqa: F811
    """A running `admin-api serve` on a free loopback port; yields its base URL."""
    env = {"DATABASE_URL": database_url, "REDIS_URL": redis_url, "LLM_ENDPOINT": openai_server.url,
           "LLM_MODEL": "test-model", "COOKIE_SECURE": "false"}  # plain http on loopback
    with serving(env, tmp_path) as process:
        yield process.base_url


# Small, so the test can go over it; the service's default is 20 MiB.
DOCUMENTS_MAX_UPLOAD_BYTES = 256 * 1024


@pytest.fixture
def documents_server(tmp_path, database_url, redis_url, openai_server, s3_server, embeddings_server) -> Iterator[str]:  # noqa: F811
    """`admin-api serve` with documents on: S3 (SeaweedFS), the real embedding model, embedded Qdrant."""
    bucket = f"web-{uuid.uuid4().hex[:12]}"
    env = {"DATABASE_URL": database_url, "REDIS_URL": redis_url, "LLM_ENDPOINT": openai_server.url,
           "LLM_MODEL": "test-model", "COOKIE_SECURE": "false", **s3_server.env(bucket),
           "EMBEDDING_MODEL_ENDPOINT": embeddings_server.url, "EMBEDDING_MODEL": embeddings_server.model,
           "QDRANT_PATH": str(tmp_path / "qdrant"), "MAX_UPLOAD_BYTES": str(DOCUMENTS_MAX_UPLOAD_BYTES),
           "INGESTION_POLL_SECONDS": "0.2"}
    with serving(env, tmp_path) as process:
        yield process.base_url


@pytest.fixture
def browser(tmp_path) -> Iterator[webdriver.Chrome]:
    """Headless Chromium with a fresh profile, nothing fetched from the network but our server."""
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
        "--window-size=1200,900",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=str(CHROMEDRIVER)))
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(tmp_path / "chromium-profile", ignore_errors=True)


class Page:
    """The chat page, by the ids of index.html."""

    def __init__(self, driver: webdriver.Chrome, base_url: str) -> None:
        self.driver = driver
        self.base_url = base_url

    def open(self) -> None:
        self.driver.get(self.base_url + "/")

    def el(self, element_id: str):
        return self.driver.find_element(By.ID, element_id)

    def wait(self, condition: Callable[[], object], message: str = ""):
        return WebDriverWait(self.driver, WAIT_SECONDS, poll_frequency=0.05).until(lambda _: condition(), message)

    def visible(self, element_id: str) -> bool:
        return self.el(element_id).is_displayed()

    def status(self) -> str:
        return self.el("status").text

    def login(self, username: str, password: str) -> None:
        self.wait(lambda: self.visible("login-view"), "login form")
        self.el("login-username").clear()
        self.el("login-username").send_keys(username)
        self.el("login-password").send_keys(password)
        self.el("login-submit").click()

    def send(self, text: str) -> None:
        self.el("message").send_keys(text)
        self.el("send").click()

    def messages(self) -> list[tuple[str, str]]:
        items = self.driver.find_elements(By.CSS_SELECTOR, "#messages > li")
        return [(item.get_attribute("class"), item.text) for item in items]

    def titles(self) -> list[str]:
        # Read in one script: the list may be re-rendered between two WebDriver calls.
        return self.driver.execute_script(
            "return Array.from(document.querySelectorAll('#conversations button'), b => b.textContent)")

    def text_of(self, selector: str) -> list[str]:
        """textContent (also of collapsed <details>), read in one script."""
        return self.driver.execute_script(
            "return Array.from(document.querySelectorAll(arguments[0]), e => e.textContent)", selector)

    def documents(self) -> list[tuple[str, str]]:
        """(file name, status line) of each document in the list, top first."""
        return self.driver.execute_script(
            "return Array.from(document.querySelectorAll('#document-list > li'),"
            " li => [li.querySelector('.doc-name').textContent, li.querySelector('.doc-status').textContent])")

    def upload(self, path) -> None:
        # The page disables the file input while an upload is in flight: a file chosen then is lost.
        self.wait(lambda: self.el("upload-file").is_enabled(), "the upload input enabled")
        self.el("upload-file").send_keys(str(path))

    def record_upload_statuses(self) -> None:
        """From now on, keep every text the upload status shows (it changes faster than polling sees)."""
        self.driver.execute_script(
            "window.uploadStatuses = [];"
            "new MutationObserver(() => window.uploadStatuses.push(document.getElementById('upload-status')"
            ".textContent)).observe(document.getElementById('upload-status'),"
            " {childList: true, characterData: true, subtree: true});")

    def upload_statuses(self) -> list[str]:
        return self.driver.execute_script("return window.uploadStatuses")

    def csp_violations(self) -> list[str]:
        return [e["message"] for e in self.driver.get_log("browser") if "Content Security Policy" in e["message"]]


@pytest.fixture
def page(browser, server) -> Page:
    return Page(browser, server)


@pytest.fixture
def documents_page(browser, documents_server) -> Page:
    return Page(browser, documents_server)
