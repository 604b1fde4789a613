"""The web client's chat features (issue 13), two people in two browser
contexts: typing, presence, edit, delete (own and a group owner's), reactions,
replies quoting a message that is not loaded, block/unblock from the
conversation's menu, and all of them under a strict Content-Security-Policy.
The session's server has a presence grace of 1 s (conftest). With
IMCHAT_UPDATE_DOCS_SCREENSHOT=1 the last test also replaces
docs/screenshot-features.png.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Locator, Route, expect

from imchat.client import ApiClient
from tests.support.clients import PASSWORD

from .conftest import CHROMIUM, CHROMIUM_ARGS, ROOT, VIEWPORT, ChatPage, MakeChat, username

pytestmark = pytest.mark.browser


def direct_pair(chat_page: MakeChat, first: str = "hello") -> tuple[ChatPage, ChatPage]:
    """Alice and Bob, each signed in, with a direct conversation open on both sides."""
    alice = chat_page("alice").register("Alice")
    bob = chat_page("bob").register("Bob")
    alice.start_chat(bob.name)
    alice.send(first)
    bob.open_conversation("Alice")
    expect(bob.message(first)).to_be_visible()
    return alice, bob


def action(chat: ChatPage, text: str, name: str) -> Locator:
    """The button ``name`` (Reply, React, Edit, Delete) beside the message ``text``."""
    message = chat.message(text)
    message.hover()
    return message.get_by_role("button", name=name, exact=True)


def reaction(chat: ChatPage, text: str, emoji: str) -> Locator:
    return chat.message(text).locator(f"[data-testid=reaction][data-emoji='{emoji}']")


def test_typing_shows_on_the_other_side_and_goes_away(chat_page: MakeChat) -> None:
    alice, bob = direct_pair(chat_page)
    indicator = bob.page.get_by_test_id("typing")
    expect(indicator).to_have_text("")
    alice.page.locator("#composer-input").press_sequentially("are you free", delay=20)
    expect(indicator).to_have_text("Alice is typing…")
    expect(bob.conversation("Alice").locator(".conv-preview")).to_have_text("typing…")
    expect(alice.page.get_by_test_id("typing")).to_have_text("")  # never one's own
    # About 4 s after the last frame it goes (the composer sends at most one per 2 s).
    expect(indicator).to_have_text("", timeout=8000)
    expect(bob.conversation("Alice").locator(".conv-preview")).to_have_text("hello")

    # The message arriving ends it at once.
    alice.page.locator("#composer-input").press_sequentially(" tonight?", delay=20)
    expect(indicator).to_have_text("Alice is typing…")
    alice.page.locator("#composer-input").press("Enter")
    expect(bob.message("are you free tonight?")).to_be_visible()
    expect(indicator).to_have_text("", timeout=1500)


def test_presence_dot_online_then_offline_with_last_seen(chat_page: MakeChat) -> None:
    alice, bob = direct_pair(chat_page)
    dot = alice.conversation("Bob").get_by_test_id("presence")
    header = alice.page.get_by_test_id("presence-text")
    # Bob is connected: online, on both sides.
    expect(dot).to_have_attribute("data-status", "online")
    expect(header).to_have_text("online")
    expect(bob.conversation("Alice").get_by_test_id("presence")).to_have_attribute(
        "data-status", "online"
    )

    bob.page.close()  # his last tab: offline a grace (1 s) later
    expect(dot).to_have_attribute("data-status", "offline")
    expect(header).to_have_text(re.compile(r"^last seen today at "))
    alice.screenshot("presence-offline-alice")

    bob.reopen()
    bob.expect_online()
    expect(dot).to_have_attribute("data-status", "online")
    expect(header).to_have_text("online")

    # A fresh page reads it from the conversation list.
    alice.page.reload()
    alice.expect_online()
    expect(alice.conversation("Bob").get_by_test_id("presence")).to_have_attribute(
        "data-status", "online"
    )


def test_edit_shows_on_both_sides_with_edited_and_errors_are_shown(
    chat_page: MakeChat,
) -> None:
    alice, bob = direct_pair(chat_page, "lunch at 12?")
    # Only one's own messages can be edited.
    expect(action(bob, "lunch at 12?", "Edit")).to_have_count(0)
    expect(action(bob, "lunch at 12?", "Delete")).to_have_count(0)

    box = alice.page.locator("#composer-input")
    action(alice, "lunch at 12?", "Edit").click()
    expect(alice.page.get_by_test_id("edit-bar")).to_contain_text("lunch at 12?")
    expect(box).to_have_value("lunch at 12?")
    box.press("Escape")  # cancelled: the box lets go of the text
    expect(alice.page.get_by_test_id("edit-bar")).to_be_hidden()
    expect(box).to_have_value("")
    action(alice, "lunch at 12?", "Edit").click()
    expect(box).to_have_value("lunch at 12?")
    alice.send("lunch at 1?")
    expect(alice.page.get_by_test_id("edit-bar")).to_be_hidden()
    for chat in (alice, bob):
        expect(chat.message("lunch at 1?").get_by_test_id("edited")).to_have_text("(edited)")
        expect(chat.message("lunch at 12?")).to_have_count(0)
        expect(chat.messages()).to_have_count(1)
    # From history too.
    bob.page.reload()
    bob.expect_online()
    bob.open_conversation("Alice")
    expect(bob.message("lunch at 1?").get_by_test_id("edited")).to_be_visible()

    # Edited offline, deleted meanwhile on another device: the server's error is shown
    # when the edit goes, and the message shows what the server has.
    action(alice, "lunch at 1?", "Edit").click()
    alice.context.set_offline(True)
    expect(alice.page.locator("#conn-state")).to_have_attribute("data-state", "offline")
    laptop = chat_page("alice", user=alice.name).sign_in()
    laptop.open_conversation("Bob")
    action(laptop, "lunch at 1?", "Delete").click()
    laptop.page.get_by_role("button", name="Delete for everyone").click()
    expect(bob.messages().first.get_by_test_id("deleted")).to_be_visible()
    alice.send("lunch at 2?")
    alice.context.set_offline(False)
    expect(alice.page.locator(".toast.error")).to_have_text(
        "This message can't be edited: it was deleted."
    )
    expect(alice.messages().first.get_by_test_id("deleted")).to_be_visible()
    expect(bob.message("lunch at 2?")).to_have_count(0)


def test_delete_shows_the_placeholder_on_both_sides(chat_page: MakeChat) -> None:
    alice, bob = direct_pair(chat_page, "oops, wrong chat")
    alice.send("hi Bob")
    expect(bob.message("hi Bob")).to_be_visible()
    action(alice, "oops, wrong chat", "Delete").click()
    dialog = alice.page.locator("#delete-dialog")
    expect(dialog).to_contain_text("Delete your message for everyone")
    dialog.get_by_role("button", name="Cancel").click()
    expect(alice.message("oops, wrong chat")).to_be_visible()

    action(alice, "oops, wrong chat", "Delete").click()
    dialog.get_by_role("button", name="Delete for everyone").click()
    for chat in (alice, bob):
        expect(chat.message("oops, wrong chat")).to_have_count(0)
        first = chat.messages().first
        expect(first).to_have_attribute("data-seq", "1")
        expect(first.get_by_test_id("deleted")).to_have_text("This message was deleted")
        expect(chat.message("hi Bob")).to_be_visible()
    # Nothing to do on a deleted message any more.
    bob.messages().first.hover()
    expect(bob.messages().first.get_by_role("button")).to_have_count(0)


def test_a_group_owner_deletes_a_members_message(chat_page: MakeChat) -> None:
    alice = chat_page("alice").register("Alice")
    bob = chat_page("bob").register("Bob")
    carol = chat_page("carol").register("Carol")
    alice.create_group("Moderated", bob.name, carol.name)
    for member in (bob, carol):
        member.open_conversation("Moderated")
    bob.send("buy cheap watches")
    expect(carol.message("buy cheap watches")).to_be_visible()
    # A plain member may not delete someone else's message; the owner may.
    expect(action(carol, "buy cheap watches", "Delete")).to_have_count(0)
    action(alice, "buy cheap watches", "Delete").click()
    expect(alice.page.locator("#delete-dialog")).to_contain_text("Bob's message")
    alice.page.get_by_role("button", name="Delete for everyone").click()
    for chat in (alice, bob, carol):
        expect(chat.messages().first.get_by_test_id("deleted")).to_be_visible()
        expect(chat.message("buy cheap watches")).to_have_count(0)


def test_reaction_counts_appear_and_go_on_toggle(chat_page: MakeChat) -> None:
    alice, bob = direct_pair(chat_page, "shipped v2")
    picker = bob.page.get_by_test_id("reaction-picker")
    action(bob, "shipped v2", "React").click()
    expect(picker).to_be_visible()
    bob.page.get_by_test_id("conversation-title").click()  # elsewhere: it closes
    expect(picker).to_have_count(0)
    action(bob, "shipped v2", "React").click()
    picker.get_by_role("button", name="React with 👍").click()
    expect(picker).to_have_count(0)
    for chat in (alice, bob):
        expect(reaction(chat, "shipped v2", "👍").locator(".count")).to_have_text("1")
    expect(reaction(bob, "shipped v2", "👍")).to_have_attribute("aria-pressed", "true")
    expect(reaction(alice, "shipped v2", "👍")).to_have_attribute("aria-pressed", "false")

    reaction(alice, "shipped v2", "👍").click()  # alice adds hers
    for chat in (alice, bob):
        expect(reaction(chat, "shipped v2", "👍").locator(".count")).to_have_text("2")
    reaction(bob, "shipped v2", "👍").click()  # bob takes his back
    for chat in (alice, bob):
        expect(reaction(chat, "shipped v2", "👍").locator(".count")).to_have_text("1")
    expect(reaction(alice, "shipped v2", "👍")).to_have_attribute("aria-pressed", "true")
    reaction(alice, "shipped v2", "👍").click()
    for chat in (alice, bob):
        expect(reaction(chat, "shipped v2", "👍")).to_have_count(0)


def test_a_reply_quotes_a_message_older_than_the_loaded_page(
    chat_page: MakeChat, server_url: str
) -> None:
    api = ApiClient(server_url)
    alice = api.register_and_login(username("alice"), PASSWORD, display_name="Alice")
    bob = api.register_and_login(username("bob"), PASSWORD, display_name="Bob")
    with api.connect(alice.token) as conn:
        conn.send("the very first question", to=bob.user_id)
        for i in range(2, 61):
            conn.send(f"filler {i}", to=bob.user_id)
        conn.send("back to your first one", to=bob.user_id, reply_to=1)

    chat = chat_page("bob", user=bob.username).sign_in()
    chat.open_conversation("Alice")
    expect(chat.messages()).to_have_count(50)  # seq 1 is not loaded: the quote is fetched
    quote = chat.message("back to your first one").get_by_test_id("quote")
    expect(quote).to_contain_text("the very first question")
    expect(quote).to_have_attribute("data-seq", "1")

    # Bob answers in the page; Alice's page shows the quote too.
    them = chat_page("alice", user=alice.username).sign_in()
    them.open_conversation("Bob")
    action(chat, "back to your first one", "Reply").click()
    expect(chat.page.get_by_test_id("reply-bar")).to_contain_text("back to your first one")
    chat.send("right, the answer is 42")
    for side in (chat, them):
        quote = side.message("right, the answer is 42").get_by_test_id("quote")
        expect(quote).to_contain_text("back to your first one")
        expect(quote).to_have_attribute("data-seq", "61")


def test_block_from_the_menu_refuses_the_peers_send_and_unblock_restores(
    chat_page: MakeChat,
) -> None:
    alice, bob = direct_pair(chat_page)
    bob.send("hey")
    expect(alice.message("hey")).to_be_visible()
    expect(alice.conversation("Bob").get_by_test_id("presence")).to_have_count(1)

    alice.page.get_by_role("button", name="Conversation menu").click()
    alice.page.get_by_role("menuitem", name="Block Bob").click()
    expect(alice.page.get_by_test_id("block-note")).to_contain_text("You blocked Bob")
    expect(alice.conversation("Bob").get_by_test_id("presence")).to_have_count(0)
    # Groups are shared spaces: no note there, and no menu.
    alice.create_group("Still friends", bob.name)
    expect(alice.page.get_by_test_id("block-note")).to_be_hidden()
    expect(alice.page.get_by_role("button", name="Conversation menu")).to_be_hidden()
    alice.open_conversation("Bob")
    expect(alice.page.get_by_test_id("block-note")).to_be_visible()

    bob.send("why no answer?")
    refused = bob.message("why no answer?")
    expect(refused).to_have_attribute("data-state", "failed")
    error = bob.page.get_by_test_id("message-error")
    expect(error).to_contain_text("This person isn't accepting your messages.")
    expect(alice.message("why no answer?")).to_have_count(0)

    # The block is the server's: a reload still shows it.
    alice.page.reload()
    alice.expect_online()
    alice.open_conversation("Bob")
    alice.page.get_by_role("button", name="Conversation menu").click()
    alice.page.get_by_role("menuitem", name="Unblock Bob").click()
    expect(alice.page.get_by_test_id("block-note")).to_be_hidden()
    expect(alice.conversation("Bob").get_by_test_id("presence")).to_have_attribute(
        "data-status", "online"
    )

    error.get_by_role("button", name="Retry").click()
    expect(refused).to_have_attribute("data-state", "sent")
    expect(alice.message("why no answer?")).to_be_visible()


def test_screenshot_of_a_conversation_with_the_features(chat_page: MakeChat) -> None:
    alice, bob = direct_pair(chat_page, "Are we still on for dinner on Friday?")
    bob.send("I can book the table")
    action(alice, "Are we still on for dinner on Friday?", "Reply").click()
    alice.send("Yes! 7 pm at Luigi's?")
    expect(bob.message("Yes! 7 pm at Luigi's?").get_by_test_id("quote")).to_be_visible()
    action(bob, "Yes! 7 pm at Luigi's?", "React").click()
    bob.page.get_by_role("button", name="React with ❤️").click()
    action(alice, "I can book the table", "React").click()
    alice.page.get_by_role("button", name="React with 👍").click()
    action(alice, "Yes! 7 pm at Luigi's?", "Edit").click()
    alice.send("Yes! 7:30 pm at Luigi's?")
    edited = alice.message("Yes! 7:30 pm at Luigi's?")
    expect(edited.get_by_test_id("edited")).to_be_visible()
    expect(reaction(alice, "Yes! 7:30 pm at Luigi's?", "❤️")).to_be_visible()
    expect(reaction(bob, "I can book the table", "👍")).to_be_visible()
    bob.page.locator("#composer-input").press_sequentially("Perfect, see you", delay=20)
    expect(alice.page.get_by_test_id("typing")).to_have_text("Bob is typing…")
    alice.page.locator("#composer-input").hover()  # no message's buttons in the picture
    expect(alice.page.locator(".msg-actions").last).to_have_css("opacity", "0")
    shot = alice.screenshot("features-alice")
    if os.environ.get("IMCHAT_UPDATE_DOCS_SCREENSHOT") == "1":
        shutil.copyfile(shot, ROOT / "docs" / "screenshot-features.png")


def strict_csp(chat: ChatPage) -> None:
    """Serve ``chat``'s page with a strict Content-Security-Policy (no inline
    script or style, style attributes included) and reload; the page keeps its
    violations in ``window.cspViolations`` (see ``violations``)."""
    origin = chat.base_url
    policy = (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        f"connect-src 'self' {origin.replace('http', 'ws', 1)}; base-uri 'none'; form-action 'none'"
    )

    def with_policy(route: Route) -> None:
        response = route.fetch()
        headers = {**response.headers, "content-security-policy": policy}
        route.fulfill(response=response, headers=headers)

    chat.page.route(f"{origin}/", with_policy)
    chat.page.add_init_script(
        "window.cspViolations = [];"
        "document.addEventListener('securitypolicyviolation', (e) =>"
        " window.cspViolations.push(`${e.violatedDirective} ${e.blockedURI} ${e.sample}`));"
    )
    chat.page.reload()
    chat.expect_online()


def violations(chat: ChatPage) -> list[str]:
    found: list[str] = chat.page.evaluate("window.cspViolations")
    return found


@pytest.fixture
def strict_chromium(browser: Browser) -> Iterator[Browser]:
    """A second Chromium for pages whose document the test serves itself: a page
    fulfilled by the test has no address space, and Chromium's local network
    access checks would then refuse its socket to 127.0.0.1."""
    strict = browser.browser_type.launch(
        executable_path=CHROMIUM,
        headless=True,
        args=[*CHROMIUM_ARGS, "--disable-features=LocalNetworkAccessChecks"],
    )
    yield strict
    strict.close()


def test_the_features_run_under_a_strict_content_security_policy(
    strict_chromium: Browser, server_url: str
) -> None:
    pages = []
    for name in ("alice", "bob"):
        context = strict_chromium.new_context(viewport=VIEWPORT)  # type: ignore[arg-type]
        pages.append(ChatPage(context, server_url, username(name)).open())
    alice, bob = pages
    alice.register("Alice")
    bob.register("Bob")
    strict_csp(alice)
    strict_csp(bob)
    alice.create_group("Strict", bob.name)  # a group shows senders in their colours
    alice.send("welcome")
    alice.start_chat(bob.name)
    expect(alice.page.get_by_test_id("conversation-title")).to_have_text("Bob")
    alice.send("first")
    bob.open_conversation("Alice")
    bob.send("second")
    action(alice, "second", "Reply").click()
    alice.send("third")
    action(bob, "third", "React").click()
    bob.page.get_by_role("button", name="React with 🎉").click()
    action(alice, "first", "Edit").click()
    alice.send("first, edited")
    bob.page.locator("#composer-input").press_sequentially("typing", delay=20)
    expect(alice.page.get_by_test_id("typing")).to_have_text("Bob is typing…")
    action(alice, "third", "Delete").click()
    alice.page.get_by_role("button", name="Delete for everyone").click()
    alice.page.get_by_role("button", name="Conversation menu").click()
    expect(alice.page.get_by_role("menuitem", name="Block Bob")).to_be_visible()
    for chat in (alice, bob):
        expect(chat.message("first, edited").get_by_test_id("edited")).to_be_visible()
        expect(chat.messages().last.get_by_test_id("deleted")).to_be_visible()
        expect(chat.messages().last.get_by_test_id("reaction")).to_have_count(0)
    bob.open_conversation("Strict")
    expect(bob.page.locator(".sender", has_text="Alice")).to_be_visible()
    assert violations(alice) == violations(bob) == []
    assert not alice.console_errors and not bob.console_errors
