"""The web client in headless Chromium against a real ``python app.py``.

Each user has a browser context of their own (their own localStorage), as two
people on two machines would. Screenshots go to test-artifacts/browser/; with
IMCHAT_UPDATE_DOCS_SCREENSHOT=1 the conversation one also replaces
docs/screenshot-conversation.png.
"""

from __future__ import annotations

import json
import os
import shutil
import urllib.request

import pytest
from playwright.sync_api import expect

from .conftest import ROOT, MakeChat

pytestmark = pytest.mark.browser


def test_index_and_static_files_are_served(server_url: str) -> None:
    with urllib.request.urlopen(server_url + "/") as response:
        page = response.read().decode()
        assert response.headers["Content-Type"].startswith("text/html")
        assert response.headers["Cache-Control"] == "no-cache"
    assert '<script type="module" src="/static/app.js">' in page
    for name, kind in (("app.js", "javascript"), ("app.css", "text/css")):
        with urllib.request.urlopen(f"{server_url}/static/{name}") as response:
            assert kind in response.headers["Content-Type"]
            assert len(response.read()) > 1000
    try:
        urllib.request.urlopen(server_url + "/static/nothing.js")
    except urllib.error.HTTPError as err:
        assert err.code == 404
        assert json.loads(err.read())["error"]["code"] == "not_found"
    else:
        raise AssertionError("a missing static file must be a 404")


def test_direct_chat_live_with_unread_count_and_sent_state(chat_page: MakeChat) -> None:
    alice = chat_page("alice").register("Alice Liddell")
    bob = chat_page("bob").register("Bob Builder")

    alice.start_chat(bob.name)
    expect(alice.page.get_by_test_id("conversation-title")).to_have_text("Bob Builder")
    alice.send("Hi Bob! Are we still on for lunch?")
    mine = alice.message("Hi Bob! Are we still on for lunch?")
    expect(mine).to_have_attribute("data-state", "sent")
    expect(mine).to_have_attribute("data-seq", "1")

    # Bob had no conversation: it appears live, unread, with the message as preview.
    entry = bob.conversation("Alice Liddell")
    expect(entry.locator(".unread-badge")).to_have_text("1")
    expect(entry.locator(".conv-preview")).to_have_text("Hi Bob! Are we still on for lunch?")
    expect(bob.page).to_have_title("(1) imchat")
    bob.open_conversation("Alice Liddell")
    expect(entry.locator(".unread-badge")).to_have_count(0)
    expect(bob.message("Hi Bob! Are we still on for lunch?")).to_have_attribute(
        "data-state", "received"
    )

    bob.send("Yes! 12:30 at the usual place?")
    expect(alice.message("Yes! 12:30 at the usual place?")).to_be_visible()
    expect(bob.message("Yes! 12:30 at the usual place?")).to_have_attribute("data-seq", "2")
    alice.send("Perfect, I'll book a table for four.")
    bob.send("Great, see you there.\nI'll bring the slides for Friday.")
    alice.send("Thanks! Could you also print the agenda?")
    bob.send("Sure, on it.")
    expect(alice.message("Sure, on it.")).to_be_visible()
    expect(alice.messages()).to_have_count(6)
    expect(alice.messages().and_(alice.page.locator("[data-state=sent]"))).to_have_count(3)
    expect(bob.messages().and_(bob.page.locator("[data-state=sent]"))).to_have_count(3)
    # Alice has the conversation open: nothing unread, newest message previewed.
    alice_entry = alice.conversation("Bob Builder")
    expect(alice_entry.locator(".unread-badge")).to_have_count(0)
    expect(alice_entry.locator(".conv-preview")).to_have_text("Sure, on it.")
    expect(alice.page.locator("[data-seq='6']")).to_be_visible()

    shot = alice.screenshot("direct-chat-alice")
    bob.screenshot("direct-chat-bob")
    if os.environ.get("IMCHAT_UPDATE_DOCS_SCREENSHOT") == "1":
        shutil.copyfile(shot, ROOT / "docs" / "screenshot-conversation.png")


def test_group_of_three_all_see_a_group_message(chat_page: MakeChat) -> None:
    alice = chat_page("alice").register("Alice")
    bob = chat_page("bob").register("Bob")
    carol = chat_page("carol").register("Carol")

    alice.create_group("Weekend trip", bob.name, carol.name)
    expect(alice.page.get_by_test_id("conversation-title")).to_have_text("Weekend trip")
    expect(alice.page.locator("#conv-subtitle")).to_have_text("3 members")
    # The members learn of the group live, before any message.
    for member in (bob, carol):
        expect(member.conversation("Weekend trip")).to_be_visible()

    alice.send("Who's in for the lake on Saturday?")
    expect(alice.message("Who's in for the lake on Saturday?")).to_have_attribute(
        "data-state", "sent"
    )
    for member in (bob, carol):
        entry = member.conversation("Weekend trip")
        expect(entry.locator(".unread-badge")).to_have_text("1")
        expect(entry.locator(".conv-preview")).to_have_text(
            "Alice: Who's in for the lake on Saturday?"
        )
    carol.open_conversation("Weekend trip")
    carol.send("Me! I'll bring snacks.")
    # Alice has the group open: the message shows; bob's list previews it.
    expect(alice.message("Me! I'll bring snacks.")).to_be_visible()
    expect(bob.conversation("Weekend trip").locator(".conv-preview")).to_have_text(
        "Carol: Me! I'll bring snacks."
    )
    expect(bob.conversation("Weekend trip").locator(".unread-badge")).to_have_text("2")
    bob.open_conversation("Weekend trip")
    expect(bob.messages()).to_have_count(2)
    expect(bob.page.locator(".sender", has_text="Alice")).to_be_visible()

    # The members dialog lists the three with their roles.
    alice.page.get_by_role("button", name="Members").click()
    expect(alice.page.locator("#member-list li")).to_have_count(3)
    expect(alice.page.locator("#member-list .role.owner")).to_have_count(1)
    alice.page.locator("#members-dialog [data-close]").click()
    expect(bob.page.get_by_test_id("note").first).to_have_text("Alice added you")
    bob.screenshot("group-chat-bob")

    # On a phone the list and the conversation take the screen in turn.
    bob.page.set_viewport_size({"width": 390, "height": 780})
    expect(bob.page.locator(".sidebar")).not_to_be_visible()
    bob.screenshot("group-chat-bob-phone")
    bob.page.get_by_role("button", name="Back to conversations").click()
    expect(bob.conversation("Weekend trip")).to_be_visible()
    expect(bob.page.get_by_test_id("messages")).not_to_be_visible()


def test_offline_member_gets_pending_messages_when_back(chat_page: MakeChat) -> None:
    alice = chat_page("alice").register("Alice")
    bob = chat_page("bob").register("Bob")
    alice.start_chat(bob.name)
    alice.send("Before you go: one question")
    expect(bob.conversation("Alice").locator(".unread-badge")).to_have_text("1")

    bob.page.close()  # bob goes offline; his browser keeps localStorage
    sent = ["Are you there?", "The deploy is at 5 pm", "Ping me when you're back"]
    for text in sent:
        alice.send(text)
    for text in sent:
        expect(alice.message(text)).to_have_attribute("data-state", "sent")

    bob.reopen()  # still signed in from localStorage
    bob.expect_online()
    entry = bob.conversation("Alice")
    expect(entry.locator(".unread-badge")).to_have_text("4")
    expect(entry.locator(".conv-preview")).to_have_text("Ping me when you're back")
    bob.open_conversation("Alice")
    expect(bob.messages()).to_have_count(4)
    for text in sent:
        expect(bob.message(text)).to_have_count(1)
    bob.screenshot("pending-after-reconnect-bob")

    # Confirmed as delivered: a third visit gets nothing twice.
    bob.page.close()
    bob.reopen()
    bob.open_conversation("Alice")
    expect(bob.messages()).to_have_count(4)


def test_reconnects_and_sends_what_was_written_offline(chat_page: MakeChat) -> None:
    alice = chat_page("alice").register("Alice")
    bob = chat_page("bob").register("Bob")
    alice.start_chat(bob.name)
    alice.send("hello")
    expect(bob.conversation("Alice")).to_be_visible()

    alice.context.set_offline(True)
    expect(alice.page.locator("#conn-state")).to_have_attribute("data-state", "offline")
    expect(alice.page.locator("#conn-text")).to_contain_text("Offline")
    alice.send("written in the tunnel")
    expect(alice.message("written in the tunnel")).to_have_attribute("data-state", "sending")
    alice.screenshot("offline-sending-alice")

    alice.context.set_offline(False)
    alice.expect_online()
    expect(alice.message("written in the tunnel")).to_have_attribute("data-state", "sent")
    bob.open_conversation("Alice")
    expect(bob.message("written in the tunnel")).to_have_count(1)


def test_errors_are_shown_clearly(chat_page: MakeChat) -> None:
    alice = chat_page("alice")
    # A wrong password on the sign-in form.
    alice.page.locator("#auth-username").fill(alice.name)
    alice.page.locator("#auth-password").fill("not the password")
    alice.page.locator("#auth-submit").click()
    expect(alice.page.locator("#auth-error")).to_have_text("Wrong username or password")
    # Registration checks the username before asking the server.
    alice.page.get_by_role("tab", name="Create account").click()
    alice.page.locator("#auth-username").fill("No Spaces")
    alice.page.locator("#auth-password").fill("short")
    alice.page.locator("#auth-submit").click()
    expect(alice.page.locator(".field-error[data-for=username]")).to_contain_text("lowercase")
    expect(alice.page.locator(".field-error[data-for=password]")).to_contain_text("8 to 128")
    alice.screenshot("register-form-errors")
    alice.register("Alice")

    # A taken username, told by the server.
    other = chat_page("other")
    other.page.get_by_role("tab", name="Create account").click()
    other.page.locator("#auth-username").fill(alice.name)
    other.page.locator("#auth-password").fill("correct horse battery")
    other.page.locator("#auth-submit").click()
    expect(other.page.locator("#auth-error")).to_contain_text("is taken")

    # A chat with nobody.
    alice.start_chat("nobody_here")
    error = alice.page.locator("#chat-error")
    expect(error).to_have_text("No one is called “nobody_here”. Check the spelling.")
    expect(alice.page.locator("#chat-dialog")).to_be_visible()
    alice.screenshot("error-unknown-username")
    alice.page.locator("#chat-dialog [data-close]").click()
    expect(alice.page.locator("[data-testid=conversation]")).to_have_count(0)


def test_send_refused_shows_error_and_retry_resends_same_id(chat_page: MakeChat) -> None:
    alice = chat_page("alice").register("Alice")
    bob = chat_page("bob").register("Bob")
    alice.create_group("Book club", bob.name)
    expect(bob.conversation("Book club")).to_be_visible()

    # Removed while offline: bob's client still believes he is a member.
    bob_user = bob.page.evaluate("JSON.parse(localStorage['imchat.session']).user_id")
    bob.page.close()
    token = alice.page.evaluate("JSON.parse(localStorage['imchat.session']).token")
    group = alice.page.evaluate(
        "Object.keys(JSON.parse(localStorage[`imchat.state.${"
        "JSON.parse(localStorage['imchat.session']).user_id}`]).conversations)"
        ".find(id => id.startsWith('g:')).slice(2)"
    )
    api = alice.page.request
    headers = {"Authorization": f"Bearer {token}"}
    url = f"{alice.base_url}/api/v1/groups/{group}/members/{bob_user}"
    assert api.delete(url, headers=headers).status == 204
    bob.reopen()
    bob.expect_online()

    bob.open_conversation("Book club")
    bob.send("Did everyone finish chapter 3?")
    refused = bob.message("Did everyone finish chapter 3?")
    expect(refused).to_have_attribute("data-state", "failed")
    error = bob.page.get_by_test_id("message-error")
    expect(error).to_contain_text("You're not a member of this group.")
    cid = refused.get_attribute("data-cid")
    bob.screenshot("send-refused-bob")

    # Back in the group, Retry sends the same client id and it goes through.
    added = api.post(
        f"{alice.base_url}/api/v1/groups/{group}/members",
        headers=headers,
        data={"user_id": bob_user},
    )
    assert added.status == 201
    error.get_by_role("button", name="Retry").click()
    expect(refused).to_have_attribute("data-state", "sent")
    expect(refused).to_have_attribute("data-cid", cid or "")
    expect(error).to_have_count(0)
    alice.open_conversation("Book club")
    expect(alice.message("Did everyone finish chapter 3?")).to_have_count(1)
