"""Presence on the production path: connections on two gateway processes,
routes in etcd, the states in Redis (grace period 2 s in the stack)."""

from __future__ import annotations

import base64
import json
import queue
import time
import urllib.request

import pytest

from imchat.client import ChatConnection, Session
from imchat.wire.ids import direct_conversation_id

from .conftest import Stack

pytestmark = [pytest.mark.integration, pytest.mark.e2e]
GRACE = 2


def connect(stack: Stack, gateway: int, user: Session) -> ChatConnection:
    conn = stack.api(gateway).connect(user.token)
    conn.wait_synced()
    return conn


def befriend(stack: Stack, a: ChatConnection, b: Session) -> None:
    a.send("hi", to=b.user_id)


def no_presence(conn: ChatConnection, seconds: float) -> None:
    with pytest.raises(queue.Empty):
        frame = conn.presence.get(timeout=seconds)
        raise AssertionError(f"unexpected {frame}")


def etcd_post(stack: Stack, path: str, body: dict[str, object]) -> dict[str, object]:
    endpoint = stack.env["IMCHAT_ETCD_ENDPOINTS"].split(",")[0]
    request = urllib.request.Request(
        endpoint + path, json.dumps(body).encode(), {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=5) as answer:
        return dict(json.loads(answer.read()))


def end_lease_of_route(stack: Stack, user_id: str) -> None:
    """End the lease the user's routes live under, as etcd does when a dead
    gateway stops renewing it (without waiting the 90 s out)."""
    prefix = f"{stack.env['IMCHAT_ETCD_PREFIX']}/routes/{user_id}/"
    key = base64.b64encode(prefix.encode()).decode()
    end = base64.b64encode(prefix[:-1].encode() + b"0").decode()
    found = etcd_post(stack, "/v3/kv/range", {"key": key, "range_end": end})
    leases = {int(str(kv["lease"])) for kv in found.get("kvs", [])}  # type: ignore[union-attr]
    assert leases, f"no route of {user_id} in etcd"
    for lease in leases:
        etcd_post(stack, "/v3/lease/revoke", {"ID": lease})


def test_presence_crosses_gateways_once(stack: Stack) -> None:
    """Bob on gateway 1, alice on gateway 0: both gateways see every route, so
    both see bob leave; exactly one of them announces it."""
    alice, bob = stack.user(), stack.user()
    with connect(stack, 0, alice) as a:
        befriend(stack, a, bob)
        b = connect(stack, 1, bob)
        online = a.presence.get(timeout=5)
        assert (online["user_id"], online["status"]) == (bob.user_id, "online")
        second = connect(stack, 0, bob)  # a second device, on the other gateway
        b.close()  # still online on gateway 0: nothing to tell
        no_presence(a, GRACE + 1.5)
        second.close()
        offline = a.presence.get(timeout=GRACE + 5)
        assert (offline["user_id"], offline["status"]) == (bob.user_id, "offline")
        no_presence(a, 1.5)  # once, not once per gateway
        conversation_id = direct_conversation_id(alice.user_id, bob.user_id)
        listed = stack.api(1).conversation(alice.token, conversation_id)["presence"]
        assert listed == {"status": "offline", "last_seen": offline["last_seen"]}


def test_a_dead_gateways_users_go_offline_when_its_lease_ends(stack: Stack) -> None:
    alice, bob = stack.user(), stack.user()
    try:
        with connect(stack, 0, alice) as a:
            befriend(stack, a, bob)
            connect(stack, 1, bob)
            assert a.presence.get(timeout=5)["status"] == "online"
            stack.kill("gateway1")  # SIGKILL: nobody closes bob's connection
            no_presence(a, GRACE + 1)  # the route lingers under the lease
            conversation_id = direct_conversation_id(alice.user_id, bob.user_id)
            listed = stack.api(0).conversation(alice.token, conversation_id)
            assert listed["presence"]["status"] == "online"
            ended = time.time() * 1000
            end_lease_of_route(stack, bob.user_id)
            offline = a.presence.get(timeout=GRACE + 5)
            assert (offline["user_id"], offline["status"]) == (bob.user_id, "offline")
            assert offline["last_seen"] >= ended - 1000
    finally:
        stack.restart("gateway1")  # and wait until it serves again
