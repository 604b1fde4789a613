"""The web client takes its conversations, history, unread counts and read
ticks from the server: localStorage is only a cache. A second browser context
of the same user is a second device (no storage of its own)."""

from __future__ import annotations

import re
import time

import pytest
from playwright.sync_api import expect

from imchat.client import ApiClient, Session
from imchat.wire.ids import direct_conversation_id
from tests.support.clients import PASSWORD

from .conftest import ChatPage, MakeChat, username

pytestmark = pytest.mark.browser

SEEDED = 120  # more than two pages of 50


def api_user(base_url: str, name: str, display_name: str) -> Session:
    return ApiClient(base_url).register_and_login(
        username(name), PASSWORD, display_name=display_name
    )


def seqs(chat: ChatPage) -> list[int]:
    return [int(s) for s in chat.messages().evaluate_all("ns => ns.map(n => n.dataset.seq)")]


def test_history_after_a_reload_and_in_a_second_browser_context(
    chat_page: MakeChat, server_url: str
) -> None:
    alice = chat_page("alice").register("Alice")
    bob = chat_page("bob").register("Bob")
    carol = chat_page("carol").register("Carol")
    alice.start_chat(bob.name)
    lines = ["one", "two", "three"]
    for text in lines:
        alice.send(text)
    bob.open_conversation("Alice")
    bob.send("four")
    expect(alice.message("four")).to_be_visible()
    # A group alice is in, without a message yet: listed by the server too.
    carol.create_group("Quiet group", alice.name)
    expect(alice.conversation("Quiet group")).to_be_visible()

    # A reload that lost the cached conversations: they come back from the server.
    alice.page.evaluate(
        "localStorage.removeItem(`imchat.state.${JSON.parse(localStorage['imchat.session']).user_id}`)"
    )
    alice.page.reload()
    alice.expect_online()
    expect(alice.conversation("Bob").locator(".conv-preview")).to_have_text("four")
    alice.open_conversation("Bob")
    expect(alice.messages()).to_have_count(4)
    assert seqs(alice) == [1, 2, 3, 4]

    # A second browser context: no storage at all, the same conversations and history.
    laptop = chat_page("alice", user=alice.name).sign_in()
    expect(laptop.conversation("Bob").locator(".conv-preview")).to_have_text("four")
    expect(laptop.conversation("Quiet group").locator(".conv-preview")).to_have_text(
        "Group created — say hello!"
    )
    expect(laptop.page.locator("[data-testid=conversation]")).to_have_count(2)
    laptop.open_conversation("Bob")
    expect(laptop.messages()).to_have_count(4)
    assert seqs(laptop) == [1, 2, 3, 4]
    for text in lines:
        expect(laptop.message(text)).to_have_attribute("data-from", alice.session()["user_id"])
    expect(laptop.message("four")).to_have_attribute("data-state", "received")
    # Live messages land after the history, once each.
    bob.send("five")
    expect(laptop.message("five")).to_have_count(1)
    expect(laptop.messages()).to_have_count(5)
    assert seqs(laptop) == [1, 2, 3, 4, 5]
    laptop.screenshot("history-second-context")


def test_unread_badge_counts_up_and_clears_when_read_on_another_device(
    chat_page: MakeChat,
) -> None:
    alice = chat_page("alice").register("Alice")
    phone = chat_page("bob").register("Bob")
    alice.start_chat(phone.name)
    badge = phone.conversation("Alice").locator(".unread-badge")
    for count, text in enumerate(["are you up?", "the build is red", "call me"], start=1):
        alice.send(text)
        expect(badge).to_have_text(str(count))
    expect(phone.page).to_have_title("(3) imchat")

    # Bob's laptop, signed in afterwards: the server's unread count.
    laptop = chat_page("bob", user=phone.name).sign_in()
    expect(laptop.conversation("Alice").locator(".unread-badge")).to_have_text("3")
    laptop.open_conversation("Alice")
    expect(laptop.messages()).to_have_count(3)
    # Read on the laptop: the phone's badge clears, with the conversation still closed there.
    expect(badge).to_have_count(0)
    expect(phone.page).to_have_title("imchat")
    expect(phone.page.locator("#conversation")).to_be_hidden()

    # Counting starts again from the laptop's read mark, on both.
    laptop.page.evaluate("document.querySelector('#back').click()")  # a phone-sized button
    alice.send("still there?")
    expect(badge).to_have_text("1")
    expect(laptop.conversation("Alice").locator(".unread-badge")).to_have_text("1")


def test_read_tick_appears_for_the_sender_when_the_recipient_opens_it(
    chat_page: MakeChat,
) -> None:
    alice = chat_page("alice").register("Alice")
    bob = chat_page("bob").register("Bob")
    alice.start_chat(bob.name)
    alice.send("did you see the report?")
    mine = alice.message("did you see the report?")
    expect(mine).to_have_attribute("data-state", "sent")
    # Bob's client has it (not opened): delivered.
    expect(mine).to_have_attribute("data-receipt", "delivered")
    expect(mine.get_by_test_id("message-state")).to_have_attribute("aria-label", "Delivered")
    bob.open_conversation("Alice")
    expect(mine).to_have_attribute("data-receipt", "read")
    expect(mine.get_by_test_id("message-state")).to_have_attribute("aria-label", "Read")
    alice.screenshot("read-tick-alice")
    # Bob's own answer is not read yet: alice has the conversation open, so it soon is.
    bob.send("yes, looks good")
    expect(bob.message("yes, looks good")).to_have_attribute("data-receipt", "read")


def test_scrolling_up_loads_older_pages_without_jumping(
    chat_page: MakeChat, server_url: str
) -> None:
    alice = api_user(server_url, "alice", "Alice")
    bob = api_user(server_url, "bob", "Bob")
    api = ApiClient(server_url)
    with api.connect(alice.token) as conn:
        for i in range(1, SEEDED + 1):
            conn.send(f"message {i}", to=bob.user_id)

    chat = chat_page("bob", user=bob.username).sign_in()
    badge = chat.conversation("Alice").locator(".unread-badge")
    expect(badge).to_have_attribute("aria-label", f"{SEEDED} unread")
    expect(badge).to_have_text("99+")
    chat.open_conversation("Alice")
    expect(chat.messages()).to_have_count(50)
    assert seqs(chat) == list(range(SEEDED - 49, SEEDED + 1))
    box = chat.page.get_by_test_id("messages")
    # At the bottom first: the newest message is in view.
    expect(chat.message(f"message {SEEDED}")).to_be_in_viewport()

    top_of = (
        "seq => document.querySelector(`[data-testid=message][data-seq='${seq}']`)"
        ".getBoundingClientRect().top"
    )
    anchor = SEEDED - 49  # the oldest message loaded
    for loaded in (100, SEEDED):
        # To the top, measured in the same task: the older page is not in yet.
        before = box.evaluate(
            f"(box, seq) => {{ box.scrollTop = 0; return ({top_of})(seq); }}", anchor
        )
        expect(chat.messages()).to_have_count(loaded)
        expect(chat.page.get_by_test_id("history-top")).not_to_contain_text("Loading")
        after = chat.page.evaluate(top_of, anchor)
        # The message that was at the top stays where it was: the page went in above it.
        assert abs(after - before) < 30, (before, after)
        anchor = SEEDED - loaded + 1
    assert seqs(chat) == list(range(1, SEEDED + 1))
    expect(chat.page.get_by_test_id("history-top")).to_have_text(
        re.compile("start of the conversation")
    )
    # Opened: everything read, on the server too.
    expect(chat.conversation("Alice").locator(".unread-badge")).to_have_count(0)
    conversation_id = direct_conversation_id(alice.user_id, bob.user_id)
    deadline = time.monotonic() + 5
    while api.conversation(bob.token, conversation_id)["read_seq"] < SEEDED:
        assert time.monotonic() < deadline, "the read mark never reached the server"
        time.sleep(0.1)


def test_a_reply_quotes_the_message_it_answers(chat_page: MakeChat) -> None:
    alice = chat_page("alice").register("Alice")
    bob = chat_page("bob").register("Bob")
    alice.start_chat(bob.name)
    alice.send("pizza or sushi?")
    alice.send("I'm hungry")
    bob.open_conversation("Alice")
    question = bob.message("pizza or sushi?")
    question.hover()
    question.get_by_role("button", name="Reply").click()
    expect(bob.page.get_by_test_id("reply-bar")).to_contain_text("pizza or sushi?")
    bob.send("sushi!")
    expect(bob.page.get_by_test_id("reply-bar")).to_be_hidden()
    for chat in (alice, bob):
        quote = chat.message("sushi!").get_by_test_id("quote")
        expect(quote).to_contain_text("pizza or sushi?")
        expect(quote).to_have_attribute("data-seq", "1")
    # From history too, in a context without storage.
    laptop = chat_page("alice", user=alice.name).sign_in()
    laptop.open_conversation("Bob")
    expect(laptop.message("sushi!").get_by_test_id("quote")).to_contain_text("pizza or sushi?")
