"""Web Push end to end: a live ``python app.py`` (embedded default) over
real sockets, sending to a local push service (tests/support/push_service.py)
that checks each request's VAPID signature and decrypts its payload with
the test browser's keys."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest

from imchat.client import ApiClient, ChatConnection, Session
from imchat.wire.ids import direct_conversation_id, group_conversation_id
from tests.support.clients import register_users
from tests.support.push_service import SLOW_SECONDS, Browser, PushService, Received
from tests.support.server import EmbeddedServer, run_server
from tests.support.waiting import wait_for

pytestmark = pytest.mark.e2e

Users = Callable[[int], list[Session]]
MUTE_ABOVE = 3
# The dispatcher waits 0.2 s for more before it hands a batch over; a
# notification comes well within this.
ARRIVES = 5.0
# How long to be sure that nothing (more) comes.
QUIET = 1.5


@pytest.fixture(scope="module")
def embedded_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedServer]:
    """This module's server: http endpoints allowed (the local push service), small groups muted."""
    env = {
        "IMCHAT_PUSH_ENDPOINT_SCHEMES": "https,http",
        "IMCHAT_PUSH_GROUP_MUTE_ABOVE": str(MUTE_ABOVE),
    }
    yield from run_server(tmp_path_factory.mktemp("push"), env)


@pytest.fixture(scope="module")
def push_service(embedded_server: EmbeddedServer) -> Iterator[PushService]:
    service = PushService().start()
    api = ApiClient(embedded_server.base_url)
    (anyone,) = register_users(embedded_server.base_url, 1)
    service.vapid_key = api.vapid_public_key(anyone.token)
    yield service
    service.stop()


@pytest.fixture(autouse=True)
def no_bad_requests(push_service: PushService) -> Iterator[None]:
    """Every request that came had a valid VAPID signature and a payload that decrypts."""
    yield
    assert push_service.problems() == []


def subscribed(
    api: ApiClient, push_service: PushService, user: Session, how: str = "ok"
) -> Browser:
    browser = push_service.browser(how)
    api.subscribe_push(user.token, browser.subscription)
    return browser


def one(push_service: PushService, browser: Browser) -> Received:
    """The one notification ``browser`` gets, after making sure no second one follows."""
    wait_for(lambda: push_service.to(browser), ARRIVES, f"a push to {browser.endpoint}")
    time.sleep(QUIET)
    (received,) = push_service.to(browser)
    return received


def nothing(push_service: PushService, *browsers: Browser, already: int = 0) -> None:
    """No (more than ``already``) notification comes to any of ``browsers``."""
    time.sleep(QUIET)
    for browser in browsers:
        assert len(push_service.to(browser)) == already


def connected(api: ApiClient, user: Session) -> ChatConnection:
    conn = api.connect(user.token)
    conn.wait_synced()
    return conn


def test_an_offline_recipient_gets_one_notification_with_the_message(
    api: ApiClient, users: Users, push_service: PushService
) -> None:
    alice, bob = users(2)
    browser = subscribed(api, push_service, bob)
    with connected(api, alice) as a:
        ack = a.send("are you there, bob?", to=bob.user_id)
        received = one(push_service, browser)
    assert received.answered == 201
    assert received.payload == {
        "conversation_id": direct_conversation_id(alice.user_id, bob.user_id),
        "msg_id": ack["msg_id"],
        "seq": ack["seq"],
        "sender": alice.user_id,
        "sender_name": alice.username,
        "title": alice.username,
        "body": "are you there, bob?",
        "group": None,
    }
    assert received.claims is not None and received.claims["aud"] == push_service.origin
    # The message is still pending for bob's next connection.
    with connected(api, bob) as b:
        assert b.receive()["msg_id"] == ack["msg_id"]


def test_a_long_body_is_cut_to_a_preview(
    api: ApiClient, users: Users, push_service: PushService
) -> None:
    alice, bob = users(2)
    browser = subscribed(api, push_service, bob)
    with connected(api, alice) as a:
        a.send("word " * 200, to=bob.user_id)
        received = one(push_service, browser)
    assert received.payload is not None
    body = received.payload["body"]
    assert len(body) == 120 and body.endswith("\u2026") and body.startswith("word word")


def test_an_online_recipient_gets_no_notification(
    api: ApiClient, users: Users, push_service: PushService
) -> None:
    alice, bob = users(2)
    browser = subscribed(api, push_service, bob)
    with connected(api, alice) as a, connected(api, bob) as b:
        a.send("live", to=bob.user_id)
        assert b.receive()["body"] == "live"
        nothing(push_service, browser)


def test_the_sender_is_never_notified(
    api: ApiClient, users: Users, push_service: PushService
) -> None:
    alice, bob = users(2)
    own = subscribed(api, push_service, alice)
    with connected(api, alice) as a:
        a.send("to bob", to=bob.user_id)
        a.close()
    nothing(push_service, own)


def test_every_browser_of_the_recipient_and_410_removes_one(
    api: ApiClient, users: Users, push_service: PushService
) -> None:
    alice, bob = users(2)
    gone, missing, kept = (
        subscribed(api, push_service, bob, how) for how in ("gone", "missing", "ok")
    )
    with connected(api, alice) as a:
        a.send("first", to=bob.user_id)
        for browser in (gone, missing, kept):
            assert one(push_service, browser).answered in (410, 404, 201)
        a.send("second", to=bob.user_id)
        wait_for(lambda: len(push_service.to(kept)) == 2, ARRIVES, "the second push")
        time.sleep(QUIET)
    # The push service said 410 and 404: those subscriptions are gone.
    assert len(push_service.to(gone)) == 1
    assert len(push_service.to(missing)) == 1
    assert [r.payload["body"] for r in push_service.to(kept) if r.payload] == ["first", "second"]


def test_a_slow_push_service_never_slows_delivery(
    api: ApiClient, users: Users, push_service: PushService
) -> None:
    alice, bob, carol = users(3)
    slow = subscribed(api, push_service, bob, "slow")
    with connected(api, alice) as a, connected(api, carol) as c:
        a.send("to offline bob", to=bob.user_id)
        wait_for(lambda: push_service.to(slow), ARRIVES, "the push service holding the request")
        # The push service is holding the request for 5 s now.
        for n in range(5):
            started = time.monotonic()
            a.send(f"to bob {n}", to=bob.user_id)
            a.send(f"to carol {n}", to=carol.user_id)
            assert c.receive(timeout=1.5)["body"] == f"to carol {n}"
            assert time.monotonic() - started < 1.5
        # And the slow one was sent all the same, in full.
        first = push_service.to(slow)[0]
        wait_for(lambda: first.answered == 201, SLOW_SECONDS + 2, "the slow answer")
    assert first.payload is not None and first.payload["body"] == "to offline bob"
    wait_for(lambda: len(push_service.to(slow)) == 6, 2 * SLOW_SECONDS + 5, "the later pushes")


def test_a_direct_conversation_switched_off_pushes_nothing(
    api: ApiClient, users: Users, push_service: PushService
) -> None:
    alice, bob = users(2)
    browser = subscribed(api, push_service, bob)
    conversation = direct_conversation_id(alice.user_id, bob.user_id)
    with connected(api, alice) as a:
        a.send("one", to=bob.user_id)
        one(push_service, browser)
        assert api.set_push_switch(bob.token, conversation, False)["push"] is False
        a.send("two", to=bob.user_id)
        time.sleep(QUIET)
        assert len(push_service.to(browser)) == 1
        api.set_push_switch(bob.token, conversation, None)
        a.send("three", to=bob.user_id)
        wait_for(lambda: len(push_service.to(browser)) == 2, ARRIVES, "the push after on again")


def test_groups_are_muted_above_the_threshold_unless_switched_on_or_replied_to(
    api: ApiClient, users: Users, push_service: PushService
) -> None:
    alice, bob, carol, dave = users(4)
    small = api.create_group(alice.token, "small", [bob.user_id, carol.user_id])["group_id"]
    large = api.create_group(alice.token, "large", [bob.user_id, carol.user_id, dave.user_id])[
        "group_id"
    ]
    bob_browser, carol_browser = (subscribed(api, push_service, u) for u in (bob, carol))
    with connected(api, alice) as a:
        a.send("to the small group", group=small)
        for browser in (bob_browser, carol_browser):
            received = one(push_service, browser)
            assert received.payload is not None
            assert received.payload["conversation_id"] == group_conversation_id(small)
            assert received.payload["group"] == small
            assert received.payload["title"] == f"{alice.username} in small"

        a.send("to the large group", group=large)  # 4 members > 3: muted by default
        nothing(push_service, bob_browser, carol_browser, already=1)

        with connected(api, carol) as c:  # carol writes while online, alice replies to her
            mine = c.send("carol's message", group=large)
        a.send("a reply to carol", group=large, reply_to=mine["seq"])
        wait_for(lambda: len(push_service.to(carol_browser)) == 2, ARRIVES, "the reply's push")
        time.sleep(QUIET)
        reply = push_service.to(carol_browser)[1]
        assert reply.payload is not None and reply.payload["body"] == "a reply to carol"
        assert len(push_service.to(bob_browser)) == 1

        switch = api.set_push_switch(bob.token, group_conversation_id(large), True)
        assert switch == {
            "conversation_id": group_conversation_id(large),
            "push": True,
            "setting": True,
        }
        a.send("bob switched on", group=large)
        wait_for(lambda: len(push_service.to(bob_browser)) == 2, ARRIVES, "the push to bob")
        time.sleep(QUIET)
        received = push_service.to(bob_browser)[1]
        assert received.payload is not None and received.payload["body"] == "bob switched on"
        assert len(push_service.to(bob_browser)) == 2
        assert len(push_service.to(carol_browser)) == 2
