"""Web Push in headless Chromium: the client subscribes after sign-in and
POSTs its subscription; a message sent while the user is away reaches the
local push service (tests/support/push_service.py), which decrypts it; that
payload, delivered to the service worker over DevTools
(``ServiceWorker.deliverPushMessage``), shows the notification, and its click
opens the conversation.

Headless Chromium has no push service to subscribe at, so only
``PushManager.subscribe`` is replaced: it returns a subscription whose
endpoint is the local push service and whose keys the test holds. Everything
else (the service worker, its registration, notifications, the page) is
Chromium's own.
"""

from __future__ import annotations

import json
import re
import urllib.request
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest
from playwright.sync_api import expect

from imchat.client import ApiClient
from imchat.wire.ids import direct_conversation_id
from tests.support.clients import register_users
from tests.support.push_service import PushService
from tests.support.server import EmbeddedServer
from tests.support.waiting import wait_for

from .conftest import ARTIFACTS, MakeChat

pytestmark = pytest.mark.browser

STUB_SUBSCRIBE = """(subscription) => {
  PushManager.prototype.subscribe = async function (options) {
    const key = new Uint8Array(options.applicationServerKey);
    window.__pushOptions = {
      userVisibleOnly: options.userVisibleOnly,
      key: btoa(String.fromCharCode(...key)),
    };
    return { endpoint: subscription.endpoint, expirationTime: null, toJSON: () => subscription };
  };
}"""
NOTIFICATIONS = """() => navigator.serviceWorker.ready
  .then((registration) => registration.getNotifications())
  .then((shown) => shown.map((n) => ({ title: n.title, body: n.body, tag: n.tag,
                                      data: n.data })))"""
CLICK = """async () => {
  const [notification] = await self.registration.getNotifications();
  self.dispatchEvent(new NotificationEvent("notificationclick", { notification }));
}"""


@pytest.fixture(scope="module")
def push_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedServer]:
    """The browser tests' server, with http endpoints allowed (the local push service)."""
    env = {
        "IMCHAT_REGISTER_LIMIT_PER_ADDRESS": "0",
        "IMCHAT_LOGIN_LIMIT_PER_ADDRESS": "0",
        "IMCHAT_PASSWORD_HASH_TIME_COST": "1",
        "IMCHAT_PASSWORD_HASH_MEMORY_KIB": "1024",
        "IMCHAT_PASSWORD_HASH_PARALLELISM": "1",
        "IMCHAT_PUSH_ENDPOINT_SCHEMES": "https,http",
    }
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    tmp = tmp_path_factory.mktemp("browser-push")
    server = EmbeddedServer(tmp / "var", ARTIFACTS / "push-server.log", env)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def server_url(push_server: EmbeddedServer) -> str:
    return push_server.base_url


@pytest.fixture(scope="module")
def push_service(push_server: EmbeddedServer) -> Iterator[PushService]:
    service = PushService().start()
    (anyone,) = register_users(push_server.base_url, 1)
    service.vapid_key = ApiClient(push_server.base_url).vapid_public_key(anyone.token)
    yield service
    service.stop()


def connections(server_url: str) -> float:
    with urllib.request.urlopen(server_url + "/metrics") as response:
        text = response.read().decode()
    match = re.search(r"^imchat_connections (\S+)$", text, re.MULTILINE)
    assert match, "no imchat_connections in /metrics"
    return float(match[1])


def b64url(std: str) -> str:
    return std.replace("+", "-").replace("/", "_").rstrip("=")


def test_subscribe_after_sign_in_then_a_push_shows_and_its_click_opens_the_conversation(
    chat_page: MakeChat, server_url: str, push_service: PushService
) -> None:
    browser = push_service.browser()
    bob = chat_page("bob")
    bob.context.grant_permissions(["notifications"], origin=server_url)
    bob.page.evaluate(STUB_SUBSCRIBE, browser.subscription)
    posted = bob.page.expect_response(
        lambda r: (
            r.url.endswith("/api/v1/users/me/push-subscriptions") and r.request.method == "POST"
        )
    )
    with posted as answer:
        bob.register("Bob Builder")
    assert answer.value.status == 201
    assert answer.value.request.post_data_json == browser.subscription
    options: dict[str, Any] = bob.page.evaluate("window.__pushOptions")
    assert options["userVisibleOnly"] is True
    assert b64url(options["key"]) == push_service.vapid_key
    me = bob.session()

    # Bob leaves; alice writes to him while no tab of his is open.
    bob.page.goto("about:blank")
    wait_for(lambda: connections(server_url) == 0, 10.0, "bob's socket closed on the server")
    api = ApiClient(server_url)
    (alice,) = register_users(server_url, 1)
    with api.connect(alice.token) as a:
        ack = a.send("Lunch at noon?", to=me["user_id"])
    wait_for(lambda: push_service.to(browser), 10.0, "the push for bob")
    (received,) = push_service.to(browser)
    assert push_service.problems() == []
    payload = received.payload
    assert payload is not None and payload["msg_id"] == ack["msg_id"]
    conversation = direct_conversation_id(alice.user_id, me["user_id"])
    assert payload["conversation_id"] == conversation

    # Back in the client (the session resumes); the push service delivers to the worker.
    bob.page.goto(server_url + "/")
    bob.expect_online()
    expect(bob.conversation(alice.username)).to_be_visible()
    cdp = bob.context.new_cdp_session(bob.page)
    registrations: list[dict[str, Any]] = []
    cdp.on(
        "ServiceWorker.workerRegistrationUpdated",
        lambda event: registrations.extend(event["registrations"]),
    )
    cdp.send("ServiceWorker.enable")

    def registered() -> list[dict[str, Any]]:
        bob.page.wait_for_timeout(20)  # the sync API hands events over while it works
        return [r for r in registrations if r["scopeURL"] == server_url + "/"]

    wait_for(registered, 5.0, "the service worker's registration")
    (registration,) = {
        r["registrationId"]: r for r in registrations if r["scopeURL"] == server_url + "/"
    }.values()
    cdp.send(
        "ServiceWorker.deliverPushMessage",
        {
            "origin": server_url,
            "registrationId": registration["registrationId"],
            "data": json.dumps(payload),
        },
    )
    shown = wait_for(lambda: bob.page.evaluate(NOTIFICATIONS), 5.0, "the notification")
    assert shown == [
        {
            "title": alice.username,
            "body": "Lunch at noon?",
            "tag": conversation,
            "data": {"conversation_id": conversation, "msg_id": ack["msg_id"]},
        }
    ]

    # The click: the worker tells the open tab to open the conversation.
    expect(bob.page.get_by_test_id("conversation-title")).not_to_be_visible()

    def running() -> list[Any]:
        bob.page.wait_for_timeout(20)
        return bob.context.service_workers

    worker = wait_for(running, 5.0, "the running service worker")[0]
    assert worker.url == server_url + "/sw.js"
    worker.evaluate(CLICK)
    expect(bob.page.get_by_test_id("conversation-title")).to_have_text(alice.username)
    expect(bob.message("Lunch at noon?")).to_be_visible()
    wait_for(lambda: bob.page.evaluate(NOTIFICATIONS) == [], 5.0, "the notification closed")

    # With no tab open the worker opens /#<conversation id>: that link opens it too.
    linked = bob.reopen().page
    linked.goto(f"{server_url}/#{quote(conversation, safe='')}")
    expect(linked.get_by_test_id("conversation-title")).to_have_text(alice.username)
    assert linked.evaluate("location.hash") == ""


def test_signing_out_removes_the_subscription(
    chat_page: MakeChat, server_url: str, push_service: PushService, push_server: EmbeddedServer
) -> None:
    browser = push_service.browser()
    carol = chat_page("carol")
    carol.context.grant_permissions(["notifications"], origin=server_url)
    carol.page.evaluate(STUB_SUBSCRIBE, browser.subscription)
    with carol.page.expect_response(lambda r: r.url.endswith("/push-subscriptions")) as answer:
        carol.register()
    assert answer.value.status == 201
    # The stub is not the browser's subscription: getSubscription() finds it only
    # when the stub says so too.
    carol.page.evaluate(
        """(subscription) => {
          PushManager.prototype.getSubscription = async () => ({
            endpoint: subscription.endpoint, unsubscribe: async () => true,
          });
        }""",
        browser.subscription,
    )
    with carol.page.expect_request(
        lambda r: r.url.endswith("/push-subscriptions") and r.method == "DELETE"
    ) as request:
        carol.page.locator("#logout").click()
    assert request.value.post_data_json == {"endpoint": browser.subscription["endpoint"]}
    expect(carol.page.locator("#auth-screen")).to_be_visible()
    rows = push_rows(push_server)
    assert browser.subscription["endpoint"] not in rows


def push_rows(server: EmbeddedServer) -> set[str]:
    import sqlite3

    with sqlite3.connect(server.sqlite_path) as db:
        return {endpoint for (endpoint,) in db.execute("SELECT endpoint FROM push_subscriptions")}


def test_the_bell_asks_for_permission_and_then_subscribes(
    chat_page: MakeChat, server_url: str, push_service: PushService
) -> None:
    browser = push_service.browser()
    dave = chat_page("dave")
    dave.page.evaluate(STUB_SUBSCRIBE, browser.subscription)
    dave.register()
    assert dave.page.evaluate("Notification.permission") == "default"
    bell = dave.page.locator("#push-enable")
    expect(bell).to_be_visible()
    dave.context.grant_permissions(["notifications"], origin=server_url)  # the user says yes
    with dave.page.expect_response(lambda r: r.url.endswith("/push-subscriptions")) as answer:
        bell.click()
    assert answer.value.status == 201
    assert answer.value.request.post_data_json == browser.subscription
    expect(bell).to_be_hidden()
