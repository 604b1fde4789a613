"""The web client's session: sockets open with one-use tickets (no token in
a URL), access tokens renew silently, and a session ended elsewhere (a
logout, a password change) signs the tab out at once."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from imchat.client import ApiClient
from tests.support.clients import PASSWORD

from .conftest import MakeChat

pytestmark = pytest.mark.browser


def test_sockets_open_with_tickets_and_tokens_renew_silently(chat_page: MakeChat) -> None:
    alice = chat_page("alice")
    urls: list[str] = []
    alice.page.on("websocket", lambda ws: urls.append(ws.url))
    alice.open().register("Alice")
    assert urls and all("ticket=" in u and "token=" not in u for u in urls), urls
    before = alice.session()
    # As if 15 minutes went by: the stored access token is about to expire.
    alice.page.evaluate(
        "() => { const s = JSON.parse(localStorage['imchat.session']);"
        " s.expires_at = Date.now(); localStorage['imchat.session'] = JSON.stringify(s); }"
    )
    alice.reopen()
    alice.expect_online()  # no sign-in screen: the refresh token renewed the session
    after = alice.session()
    assert after["refresh_token"] != before["refresh_token"]
    assert after["user_id"] == before["user_id"]


def test_a_session_ended_elsewhere_signs_the_tab_out(chat_page: MakeChat) -> None:
    alice = chat_page("alice").open().register("Alice")
    api = ApiClient(alice.base_url)
    other = api.login(alice.name, PASSWORD)
    api.change_password(other.token, PASSWORD, "a new long secret")  # every other session ends
    expect(alice.page.locator("#auth-screen")).to_be_visible()
    expect(alice.page.locator("#auth-error")).to_contain_text("signed out")
    assert alice.page.evaluate("localStorage['imchat.session'] === undefined")


def test_the_logout_button_ends_the_session_on_the_server(chat_page: MakeChat) -> None:
    alice = chat_page("alice").open().register("Alice")
    token = alice.session()["token"]
    alice.page.locator("#logout").click()
    expect(alice.page.locator("#auth-screen")).to_be_visible()
    status = alice.page.request.get(
        f"{alice.base_url}/api/v1/users/me", headers={"Authorization": f"Bearer {token}"}
    ).status
    assert status == 401
