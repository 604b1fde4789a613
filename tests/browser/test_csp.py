"""The web client runs under the server's Content-Security-Policy, and the
browser tests see every violation of it (conftest's ``assert_no_csp_violations``,
run after every test that opens a page)."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from imchat.security import CONTENT_SECURITY_POLICY

from .conftest import ChatPage, MakeChat, assert_no_csp_violations

pytestmark = pytest.mark.browser


def test_page_is_served_with_the_policy_and_the_client_works(chat_page: MakeChat) -> None:
    chat = chat_page("csp")
    response = chat.page.goto(chat.base_url + "/")
    assert response is not None and response.ok
    assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "no-referrer"
    # Styles applied (the stylesheet loaded) and the module ran (the form is shown),
    # and the WebSocket was allowed: the client goes online.
    expect(chat.page.locator("#auth-screen")).to_be_visible()
    assert chat.page.evaluate("getComputedStyle(document.body).margin") == "0px"
    chat.register()
    assert chat.csp_violations == []


def test_injected_inline_script_and_style_are_reported(chat_page: MakeChat) -> None:
    chat = chat_page("inject")
    expect(chat.page.locator("#auth-screen")).to_be_visible()
    ran = chat.page.evaluate(
        """() => {
          const script = document.createElement("script");
          script.textContent = "window.inlineRan = true";
          document.body.append(script);
          document.body.setAttribute("style", "color: red");
          return window.inlineRan === true;
        }"""
    )
    assert ran is False, "the inline script ran: the policy is not enforced"
    expect_violations(chat, "script-src", "style-src")
    with pytest.raises(AssertionError, match="Content-Security-Policy violations"):
        assert_no_csp_violations([chat])
    chat.csp_violations.clear()  # seen and checked: not this test's failure


def expect_violations(chat: ChatPage, *directives: str) -> None:
    """Wait until a violation of each directive was reported (events are async)."""

    def reported() -> bool:
        return all(any(d in v for v in chat.csp_violations) for d in directives)

    chat.page.wait_for_function("() => true")  # let queued events be delivered
    for _ in range(50):
        if reported():
            return
        chat.page.wait_for_timeout(100)
    raise AssertionError(f"violations of {directives} not reported: {chat.csp_violations}")
