"""Fixtures of the browser tests: a real ``python app.py`` in the embedded default,
Debian's headless Chromium driven by Playwright, and ``ChatPage``, one user's
tab of the web client with the steps a person takes in it.

Chromium is never downloaded (``playwright install`` cannot work here): it is
Debian's ``/usr/bin/chromium``. When it is missing the tests fail and say how
to install it; they never skip.
"""

from __future__ import annotations

import os
import re
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

import pytest
from playwright.sync_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Locator,
    Page,
    expect,
    sync_playwright,
)

from tests.support.clients import PASSWORD
from tests.support.server import ROOT, EmbeddedServer

ARTIFACTS = ROOT / "test-artifacts" / "browser"
CHROMIUM = os.environ.get("IMCHAT_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
VIEWPORT = {"width": 1280, "height": 800}
# How long an expectation waits for the UI; live delivery takes milliseconds.
UI_TIMEOUT_MS = 10_000
# Every page reports each Content-Security-Policy violation (the event the
# browser fires on the document) to the test through an exposed binding:
# bindings and init scripts come in over CDP, which the policy does not govern.
CSP_BINDING = "__imchatCspViolation"
CSP_WATCH = f"""
document.addEventListener("securitypolicyviolation", (e) => {{
  window.{CSP_BINDING}(`${{e.effectiveDirective}} refused ${{e.blockedURI || "inline"}}`
    + ` at ${{e.sourceFile || e.documentURI}}:${{e.lineNumber}}`);
}});
"""


expect.set_options(timeout=UI_TIMEOUT_MS)


@pytest.fixture(scope="session")
def server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``python app.py`` in the embedded default, on a fresh data dir, not rate
    limited, with a presence grace of 1 s. One server for the whole session."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    env = {
        "IMCHAT_REGISTER_LIMIT_PER_ADDRESS": "0",
        "IMCHAT_LOGIN_LIMIT_PER_ADDRESS": "0",
        # Real argon2id at its smallest cost: the tests register a dozen users.
        "IMCHAT_PASSWORD_HASH_TIME_COST": "1",
        "IMCHAT_PASSWORD_HASH_MEMORY_KIB": "1024",
        "IMCHAT_PASSWORD_HASH_PARALLELISM": "1",
        # Offline a second after the last tab closes: the presence test waits that long.
        "IMCHAT_PRESENCE_GRACE_SECONDS": "1",
    }
    log_path = ARTIFACTS / "server.log"
    log_path.unlink(missing_ok=True)  # this run's log only
    data_dir = tmp_path_factory.mktemp("browser-server") / "var"
    server = EmbeddedServer(data_dir, log_path, env)
    server.start()
    try:
        yield server.base_url
    finally:
        server.stop()


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    """Debian's Chromium, headless; a missing one fails the run with the fix."""
    if not (Path(CHROMIUM).exists() or shutil.which(CHROMIUM)):
        pytest.fail(
            f"Chromium is required at {CHROMIUM} for the browser tests: "
            "install it with `apt-get install -y chromium` (never `playwright install`)",
            pytrace=False,
        )
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        yield chromium
        chromium.close()


def username(name: str) -> str:
    """A fresh username that reads like ``name`` (the server is shared by the session)."""
    return f"{name}_{uuid.uuid4().hex[:6]}"


class ChatPage:
    """One person's tab of the web client, with the steps a person takes."""

    def __init__(self, context: BrowserContext, base_url: str, name: str) -> None:
        self.context = context
        self.base_url = base_url
        self.name = name
        self.console_errors: list[str] = []
        self.csp_violations: list[str] = []
        context.expose_binding(CSP_BINDING, lambda _source, text: self.csp_violations.append(text))
        context.add_init_script(CSP_WATCH)
        self.page: Page = context.new_page()
        self._watch(self.page)

    def _watch(self, page: Page) -> None:
        page.set_default_timeout(UI_TIMEOUT_MS)
        page.on("pageerror", lambda err: self.console_errors.append(str(err)))
        # Chromium also says so on the console (for what fires no event, e.g. in a worker).
        page.on("console", self._console)

    def _console(self, message: ConsoleMessage) -> None:
        if message.type == "error" and "Content Security Policy" in message.text:
            self.csp_violations.append(f"console: {message.text[:160]}")

    # ------------------------------------------------------------ navigation
    def open(self) -> ChatPage:
        self.page.goto(self.base_url + "/")
        return self

    def reopen(self) -> ChatPage:
        """A new tab of the same browser profile (localStorage kept), as after a restart."""
        self.page = self.context.new_page()
        self._watch(self.page)
        return self.open()

    # -------------------------------------------------------------- account
    def register(self, display_name: str = "") -> ChatPage:
        page = self.page
        page.get_by_role("tab", name="Create account").click()
        page.locator("#auth-username").fill(self.name)
        if display_name:
            page.locator("#auth-display-name").fill(display_name)
        page.locator("#auth-password").fill(PASSWORD)
        page.locator("#auth-submit").click()
        self.expect_online()
        return self

    def sign_in(self) -> ChatPage:
        page = self.page
        page.locator("#auth-username").fill(self.name)
        page.locator("#auth-password").fill(PASSWORD)
        page.locator("#auth-submit").click()
        self.expect_online()
        return self

    def session(self) -> dict[str, str]:
        """The signed-in session this tab keeps (its token and user id)."""
        session: dict[str, str] = self.page.evaluate("JSON.parse(localStorage['imchat.session'])")
        return session

    def expect_online(self) -> None:
        expect(self.page.locator("#conn-state")).to_have_attribute("data-state", "online")

    # -------------------------------------------------------- conversations
    def start_chat(self, with_username: str) -> None:
        self.page.get_by_role("button", name="New chat").click()
        self.page.locator("#chat-username").fill(with_username)
        self.page.locator("#chat-submit").click()

    def create_group(self, name: str, *members: str) -> None:
        self.page.get_by_role("button", name="New group").click()
        self.page.locator("#group-name").fill(name)
        self.page.locator("#group-members").fill(", ".join(members))
        self.page.locator("#group-submit").click()
        expect(self.page.locator("#group-dialog")).not_to_be_visible()

    def conversation(self, title: str) -> Locator:
        """The conversation list's entry titled ``title``."""
        return self.page.locator(
            "[data-testid=conversation]",
            has=self.page.locator(".conv-name", has_text=re.compile(f"^{re.escape(title)}$")),
        )

    def open_conversation(self, title: str) -> None:
        self.conversation(title).click()
        expect(self.page.get_by_test_id("conversation-title")).to_have_text(title)

    def send(self, text: str) -> None:
        """Type and press Enter, as a person does."""
        box = self.page.locator("#composer-input")
        box.fill(text)
        box.press("Enter")
        expect(box).to_have_value("")

    def messages(self) -> Locator:
        return self.page.get_by_test_id("messages").get_by_test_id("message")

    def message(self, text: str) -> Locator:
        return self.messages().filter(
            has=self.page.locator(".body", has_text=re.compile(f"^{re.escape(text)}$"))
        )

    def screenshot(self, name: str) -> Path:
        path = ARTIFACTS / f"{name}.png"
        self.page.screenshot(path=str(path))
        return path


class MakeChat(Protocol):
    def __call__(self, name: str, *, user: str | None = None) -> ChatPage: ...


@pytest.fixture
def chat_page(browser: Browser, server_url: str) -> Iterator[MakeChat]:
    """Make a user's tab, each in its own browser context (its own localStorage):
    a fresh username that reads like ``name``, or the account ``user`` (another
    device of a user, or one registered through the API)."""
    contexts: list[BrowserContext] = []
    pages: list[ChatPage] = []

    def make(name: str, *, user: str | None = None) -> ChatPage:
        context = browser.new_context(viewport=VIEWPORT)  # type: ignore[arg-type]
        contexts.append(context)
        chat = ChatPage(context, server_url, user or username(name))
        pages.append(chat)
        return chat.open()

    yield make
    for context in contexts:
        context.close()
    # An uncaught exception in the client is a bug even when the steps passed.
    errors = {p.name: p.console_errors for p in pages if p.console_errors}
    assert not errors, f"JavaScript errors in the client: {errors}"
    assert_no_csp_violations(pages)


def assert_no_csp_violations(pages: list[ChatPage]) -> None:
    """Fail on any Content-Security-Policy violation a page reported: the client
    must work under the server's policy (no inline script, style or handler)."""
    violations = {p.name: p.csp_violations for p in pages if p.csp_violations}
    assert not violations, f"Content-Security-Policy violations in the client: {violations}"
