"""Web Push routes (/api/v1/users/me/push-subscriptions, /api/v1/push/vapid-public-key,
/api/v1/conversations/{id}/push) and who the push job picks, on the embedded
default (unit) and on MariaDB + Redis (integration)."""

from __future__ import annotations

import base64
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from flask import Flask

from imchat.factory import create_app, services_of
from imchat.ops import migrate
from imchat.services.push import keys
from imchat.services.push.notify import Unrouted, plan
from imchat.stores import push as push_store

from .history_support import Chat, direct_id, group_id_of
from .support import ApiClient, User, assert_error

SUBSCRIPTIONS = "/users/me/push-subscriptions"


def configure_vapid(api: ApiClient) -> None:
    """Production must configure a key pair (the embedded default makes its own)."""
    if not api.services.settings.embedded:
        private = keys.generate_private_key()
        api.services.__dict__["vapid"] = keys.VapidKeys(
            private, keys.public_key_of(keys.private_key_of(private))
        )


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def browser_keys() -> dict[str, str]:
    """What a browser's PushSubscription carries: its P-256 public key and a 16-byte secret."""
    public = ec.generate_private_key(ec.SECP256R1()).public_key()
    point = public.public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    return {"p256dh": b64url(point), "auth": b64url(os.urandom(16))}


def subscription(endpoint: str | None = None) -> dict[str, Any]:
    endpoint = endpoint or f"https://push.example.com/send/{uuid.uuid4().hex}"
    return {"endpoint": endpoint, "expirationTime": None, "keys": browser_keys()}


def subscribe(api: ApiClient, user: User, body: dict[str, Any]) -> None:
    response = api.call("POST", SUBSCRIPTIONS, user, json=body)
    assert response.status_code == 201, response.json
    assert response.json == {"endpoint": body["endpoint"]}


def stored(api: ApiClient, *users: User) -> dict[str, list[push_store.Subscription]]:
    with api.services.db.session() as session:
        return push_store.of_users(session, [u.user_id for u in users])


def test_vapid_public_key_is_an_uncompressed_p256_point_and_stays(api: ApiClient) -> None:
    configure_vapid(api)
    alice = api.user("alice")
    first = api.call("GET", "/push/vapid-public-key", alice)
    assert first.status_code == 200, first.json
    key: str = first.json["key"]  # type: ignore[index]
    point = keys.b64url_decode(key)
    assert len(point) == 65 and point[0] == 4
    ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point)  # on the curve
    assert "=" not in key
    assert api.call("GET", "/push/vapid-public-key", api.user("bob")).json == {"key": key}
    assert key == api.services.vapid.public_key


def test_subscribe_again_replaces_the_keys_and_unsubscribe(api: ApiClient) -> None:
    alice = api.user("alice")
    first = subscription()
    subscribe(api, alice, first)
    again = {**first, "keys": browser_keys()}
    subscribe(api, alice, again)
    other = subscription()
    subscribe(api, alice, other)
    found = stored(api, alice)[alice.user_id]
    assert sorted((s.endpoint, s.p256dh, s.auth) for s in found) == sorted(
        [
            (first["endpoint"], again["keys"]["p256dh"], again["keys"]["auth"]),
            (other["endpoint"], other["keys"]["p256dh"], other["keys"]["auth"]),
        ]
    )
    gone = api.call("DELETE", SUBSCRIPTIONS, alice, json={"endpoint": first["endpoint"]})
    assert gone.status_code == 204 and gone.get_data() == b""
    assert [s.endpoint for s in stored(api, alice)[alice.user_id]] == [other["endpoint"]]
    again_gone = api.call("DELETE", SUBSCRIPTIONS, alice, json={"endpoint": first["endpoint"]})
    assert again_gone.status_code == 204


def test_an_endpoint_belongs_to_whoever_subscribed_last_and_only_they_remove_it(
    api: ApiClient,
) -> None:
    alice, bob = api.user("alice"), api.user("bob")
    body = subscription()
    subscribe(api, alice, body)
    subscribe(api, bob, body)  # the same browser, another account signed in
    found = stored(api, alice, bob)
    assert alice.user_id not in found
    assert [s.endpoint for s in found[bob.user_id]] == [body["endpoint"]]
    assert (
        api.call("DELETE", SUBSCRIPTIONS, alice, json={"endpoint": body["endpoint"]}).status_code
        == 204
    )
    assert [s.endpoint for s in stored(api, bob)[bob.user_id]] == [body["endpoint"]]


def test_a_user_keeps_at_most_twenty_browsers(api: ApiClient) -> None:
    alice = api.user("alice")
    bodies = [subscription() for _ in range(21)]
    for body in bodies:
        subscribe(api, alice, body)
    kept = {s.endpoint for s in stored(api, alice)[alice.user_id]}
    assert len(kept) == 20
    assert bodies[-1]["endpoint"] in kept


BAD_SUBSCRIPTIONS: list[Any] = [
    {},
    {"endpoint": "https://push.example.com/x"},
    {"keys": browser_keys()},
    {"endpoint": "not a url", "keys": browser_keys()},
    {"endpoint": "ftp://push.example.com/x", "keys": browser_keys()},
    {"endpoint": "http://127.0.0.1:9/x", "keys": browser_keys()},  # https only by default
    {"endpoint": "https://push.example.com/" + "x" * 2100, "keys": browser_keys()},
    {"endpoint": 7, "keys": browser_keys()},
    {"endpoint": "https://push.example.com/x", "keys": {"p256dh": "x"}},
    {"endpoint": "https://push.example.com/x", "keys": {**browser_keys(), "p256dh": "AAAA"}},
    {"endpoint": "https://push.example.com/x", "keys": {**browser_keys(), "p256dh": "!!!"}},
    {"endpoint": "https://push.example.com/x", "keys": {**browser_keys(), "auth": "AAAA"}},
    {"endpoint": "https://push.example.com/x", "keys": {**browser_keys(), "auth": "%%%"}},
    {"endpoint": "https://push.example.com/x", "keys": {**browser_keys(), "extra": "1"}},
    {"endpoint": "https://push.example.com/x", "keys": [1]},
    {**subscription(), "more": 1},
    {**subscription(), "expirationTime": "soon"},
    [subscription()],
    "x",
]


def test_bad_subscriptions_are_json_400s(api: ApiClient) -> None:
    alice = api.user("alice")
    for body in BAD_SUBSCRIPTIONS:
        assert_error(api.call("POST", SUBSCRIPTIONS, alice, json=body), 400)
    not_json = api.call(
        "POST", SUBSCRIPTIONS, alice, data="{nope", headers={"Content-Type": "application/json"}
    )
    assert_error(not_json, 400)
    for body in ({}, {"endpoint": "nope"}, {"endpoint": "https://x.example/y", "more": 1}, [1]):
        assert_error(api.call("DELETE", SUBSCRIPTIONS, alice, json=body), 400)
    assert stored(api, alice) == {}


def test_every_push_route_needs_a_token(api: ApiClient) -> None:
    body = subscription()
    assert_error(api.call("POST", SUBSCRIPTIONS, json=body), 401)
    assert_error(api.call("DELETE", SUBSCRIPTIONS, json={"endpoint": body["endpoint"]}), 401)
    assert_error(api.call("GET", "/push/vapid-public-key"), 401)
    assert_error(api.call("GET", "/conversations/g:x/push"), 401)
    assert_error(api.call("PUT", "/conversations/g:x/push", json={"push": False}), 401)
    bad = User("nobody", "nobody", "not-a-token")
    assert_error(api.call("GET", "/push/vapid-public-key", bad), 401)


# ------------------------------------------------------ per conversation
def switch(api: ApiClient, user: User, conversation_id: str, **put: Any) -> dict[str, Any]:
    if put:
        response = api.call("PUT", f"/conversations/{conversation_id}/push", user, json=put)
    else:
        response = api.call("GET", f"/conversations/{conversation_id}/push", user)
    assert response.status_code == 200, response.json
    body: dict[str, Any] = response.json  # type: ignore[assignment]
    return body


def test_the_switch_of_a_direct_conversation(api: ApiClient) -> None:
    alice, bob = api.user("alice"), api.user("bob")
    Chat(api).send(alice, "hi", to=bob)
    conversation = direct_id(alice, bob)
    default = {"conversation_id": conversation, "push": True, "setting": None}
    assert switch(api, bob, conversation) == default
    off = {"conversation_id": conversation, "push": False, "setting": False}
    assert switch(api, bob, conversation, push=False) == off
    assert switch(api, bob, conversation) == off
    assert switch(api, alice, conversation) == default  # a switch is the caller's own
    assert switch(api, bob, conversation, push=None) == default
    on = {"conversation_id": conversation, "push": True, "setting": True}
    assert switch(api, bob, conversation, push=True) == on


@pytest.mark.unit
def test_the_switch_of_a_group_follows_its_size_until_set(data_dir: Path) -> None:
    app = create_app(overrides={"data_dir": str(data_dir), "push_group_mute_above": 2}, environ={})
    migrate.upgrade(services_of(app).settings)
    try:
        api = ApiClient(app)
        alice, bob, carol = api.user("alice"), api.user("bob"), api.user("carol")
        small = group_id_of(api.group(alice, bob, name="two"))
        large = group_id_of(api.group(alice, bob, carol, name="three"))
        assert switch(api, bob, small)["push"] is True
        assert switch(api, bob, large) == {"conversation_id": large, "push": False, "setting": None}
        assert switch(api, bob, large, push=True)["push"] is True
        assert switch(api, carol, large)["push"] is False
    finally:
        services_of(app).close()


def test_the_switch_is_for_participants_only_and_bad_bodies_are_400s(api: ApiClient) -> None:
    alice, bob, carol = api.user("alice"), api.user("bob"), api.user("carol")
    group = group_id_of(api.group(alice, bob))
    assert_error(api.call("GET", f"/conversations/{group}/push", carol), 403)
    assert_error(api.call("PUT", f"/conversations/{group}/push", carol, json={"push": True}), 403)
    unknown = f"g:{uuid.uuid4()}"
    assert_error(api.call("GET", f"/conversations/{unknown}/push", alice), 404)
    assert_error(api.call("PUT", f"/conversations/{unknown}/push", alice, json={"push": 1}), 400)
    assert_error(api.call("PUT", f"/conversations/{unknown}/push", alice, json={"push": True}), 404)
    for body in ({}, {"push": "yes"}, {"push": 1}, {"push": True, "more": 1}, [True], "x"):
        assert_error(api.call("PUT", f"/conversations/{group}/push", bob, json=body), 400)
    assert switch(api, bob, group)["setting"] is None


# ------------------------------------------------------ who is notified
def unrouted(
    conversation_id: str, sender: User, users: list[User], group: str | None = None, **kw: Any
) -> Unrouted:
    return Unrouted(
        conversation_id=conversation_id,
        msg_id=uuid.uuid4().hex,
        seq=kw.get("seq", 1),
        sender=sender.user_id,
        body=kw.get("body", "hello"),
        group=group,
        reply_to=kw.get("reply_to"),
        users=tuple(u.user_id for u in users),
    )


def notified(api: ApiClient, *messages: Unrouted) -> list[tuple[str, str]]:
    """(endpoint, msg_id) of each notification the job would send."""
    return sorted(
        (n.subscription.endpoint, n.payload["msg_id"]) for n in plan(api.services, messages)
    )


@pytest.fixture
def small_groups(api: ApiClient, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Groups of more than 3 members are muted by default."""
    settings = api.services.settings.replace(push_group_mute_above=3)
    monkeypatch.setattr(api.services, "settings", settings)
    yield


@pytest.mark.usefixtures("small_groups")
def test_the_job_notifies_by_the_rules(api: ApiClient, monkeypatch: pytest.MonkeyPatch) -> None:
    # The plan is asked here directly: nothing is sent to the made-up push service.
    monkeypatch.setattr(api.services.push_dispatcher, "add", lambda messages: None)
    alice, bob, carol, dave = (api.user(n) for n in ("alice", "bob", "carol", "dave"))
    chat = Chat(api)
    endpoints = {}
    for user in (alice, bob, carol, dave):
        body = subscription()
        subscribe(api, user, body)
        endpoints[user.user_id] = body["endpoint"]
    chat.send(alice, "hi", to=bob)
    direct = direct_id(alice, bob)
    small = api.group(alice, bob, carol, name="small")
    large = api.group(alice, bob, carol, dave, name="large")
    chat.send(bob, "mine", group=large)  # seq 1 of the large group, bob's

    m = unrouted(direct, alice, [bob, alice], body="hi " + "x" * 300)
    assert notified(api, m) == [(endpoints[bob.user_id], m.msg_id)]  # never the sender
    (only,) = plan(api.services, [m])
    assert only.payload["conversation_id"] == direct
    assert only.payload["sender"] == alice.user_id and only.payload["msg_id"] == m.msg_id
    assert len(only.payload["body"]) == 120 and only.payload["body"].endswith("\u2026")
    switch(api, bob, direct, push=False)
    assert notified(api, m) == []

    s = unrouted(group_id_of(small), alice, [bob, carol], group=small)
    assert notified(api, s) == sorted(
        [(endpoints[bob.user_id], s.msg_id), (endpoints[carol.user_id], s.msg_id)]
    )
    switch(api, carol, group_id_of(small), push=False)
    assert notified(api, s) == [(endpoints[bob.user_id], s.msg_id)]

    g = group_id_of(large)
    muted = unrouted(g, alice, [bob, carol, dave], group=large, seq=2)
    assert notified(api, muted) == []  # 4 members > 3
    reply = unrouted(g, alice, [bob, carol, dave], group=large, seq=3, reply_to=1)
    assert notified(api, reply) == [(endpoints[bob.user_id], reply.msg_id)]  # bob's message
    switch(api, dave, g, push=True)
    assert notified(api, reply) == sorted(
        [(endpoints[bob.user_id], reply.msg_id), (endpoints[dave.user_id], reply.msg_id)]
    )
    switch(api, bob, g, push=False)
    assert notified(api, reply) == [(endpoints[dave.user_id], reply.msg_id)]
    # All at once, as one batch: the same answers (dave switched the large group on).
    assert notified(api, m, s, muted, reply) == sorted(
        [
            (endpoints[bob.user_id], s.msg_id),
            (endpoints[dave.user_id], muted.msg_id),
            (endpoints[dave.user_id], reply.msg_id),
        ]
    )


@pytest.mark.integration
def test_production_without_a_vapid_key_answers_503_not_500(real_app: Flask) -> None:
    api = ApiClient(real_app)
    alice = api.user("alice")
    error = assert_error(api.call("GET", "/push/vapid-public-key", alice), 503)
    assert "not configured" in error["message"]
