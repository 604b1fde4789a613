"""Presence over real sockets against the embedded default (with a 2 s grace
period): direct peers are told online on a user's first connection and
offline a grace period after the last one closed, never across a block,
never on a reload; the conversation list shows what stands."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from imchat.client import ApiClient, Session
from imchat.wire.ids import direct_conversation_id
from tests.support.server import EmbeddedServer, run_server
from tests.support.sockets import RawSocket, Sockets

pytestmark = pytest.mark.e2e

Users = Callable[[int], list[Session]]
GRACE = 2


@pytest.fixture(scope="module")
def embedded_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedServer]:
    env = {"IMCHAT_PRESENCE_GRACE_SECONDS": str(GRACE)}
    yield from run_server(Path(tmp_path_factory.mktemp("presence")), env)


def connect(sockets: Sockets, user: Session) -> RawSocket:
    """A connection of ``user``, its pending messages read up to ``synced``."""
    conn = sockets.raw(user, synced=None)
    while conn.recv()["type"] != "synced":
        pass
    return conn


def befriend(sockets: Sockets, sender: RawSocket, to: Session) -> None:
    """Start a direct conversation: one message from ``sender`` to ``to``."""
    sender.send({"type": "send", "id": f"hi-{to.user_id}", "to": to.user_id, "body": "hi"})
    assert sender.recv_type("ack")["seq"] >= 1


def presence_in_list(api: ApiClient, viewer: Session, peer: Session) -> object:
    conversation_id = direct_conversation_id(viewer.user_id, peer.user_id)
    return api.conversation(viewer.token, conversation_id)["presence"]


def test_a_peer_is_told_online_then_offline_after_the_grace(
    api: ApiClient, users: Users, sockets: Sockets
) -> None:
    alice, bob = users(2)
    a = connect(sockets, alice)
    befriend(sockets, a, bob)
    assert presence_in_list(api, alice, bob) == {"status": "offline", "last_seen": None}
    b = connect(sockets, bob)
    online = a.recv_type("presence")
    assert online == {
        "type": "presence",
        "user_id": bob.user_id,
        "status": "online",
        "last_seen": None,
    }
    assert presence_in_list(api, alice, bob) == {"status": "online", "last_seen": None}
    closed_at = int(time.time() * 1000)
    b.close()
    a.assert_quiet(GRACE - 1)  # nothing within the grace period
    offline = a.recv_type("presence", timeout=GRACE + 3)
    assert (offline["user_id"], offline["status"]) == (bob.user_id, "offline")
    assert abs(offline["last_seen"] - closed_at) < 1000, (offline, closed_at)
    seen = presence_in_list(api, alice, bob)
    assert seen == {"status": "offline", "last_seen": offline["last_seen"]}
    a.ping()  # and the sender's own connection was never told of itself


def test_a_reload_or_a_second_connection_sends_nothing(users: Users, sockets: Sockets) -> None:
    alice, bob = users(2)
    a = connect(sockets, alice)
    befriend(sockets, a, bob)
    b = connect(sockets, bob)
    assert a.recv_type("presence")["status"] == "online"
    second = connect(sockets, bob)  # another tab: still online, nobody told
    b.close()
    second.close()
    reloaded = connect(sockets, bob)  # back well within the grace period
    a.assert_quiet(GRACE + 1.5)
    reloaded.close()
    assert a.recv_type("presence", timeout=GRACE + 3)["status"] == "offline"
    connect(sockets, bob)  # after the offline, a connect is news again
    assert a.recv_type("presence")["status"] == "online"


def test_only_connected_direct_peers_are_told(
    users: Users, sockets: Sockets, api: ApiClient
) -> None:
    alice, bob, carol, dave = users(4)
    # carol shares only a group with bob: groups can be large, no presence there.
    api.create_group(bob.token, "team", [carol.user_id])
    a = connect(sockets, alice)
    befriend(sockets, a, bob)
    c = connect(sockets, carol)
    d = connect(sockets, dave)
    befriend(sockets, d, carol)  # dave and carol: peers, but not of bob
    c.recv_type("msg")
    connect(sockets, bob)
    assert a.recv_type("presence")["user_id"] == bob.user_id
    c.ping()
    c.assert_quiet()
    d.ping()
    d.assert_quiet()


def test_no_presence_across_a_block_either_way(
    api: ApiClient, users: Users, sockets: Sockets
) -> None:
    alice, bob, carol = users(3)
    a = connect(sockets, alice)
    c = connect(sockets, carol)
    befriend(sockets, a, bob)
    befriend(sockets, c, bob)
    api.block(bob.token, alice.user_id)  # bob blocks alice: she sees none of him
    b = connect(sockets, bob)
    assert c.recv_type("presence")["user_id"] == bob.user_id  # carol is told
    a.ping()
    a.assert_quiet()
    assert presence_in_list(api, alice, bob) is None
    assert presence_in_list(api, bob, alice) is None
    assert presence_in_list(api, carol, bob) == {"status": "online", "last_seen": None}
    # Nor does bob hear of alice: she leaves and comes back after the grace period.
    a.close()
    time.sleep(GRACE + 1)
    a = connect(sockets, alice)
    b.ping()
    b.assert_quiet()
    api.unblock(bob.token, alice.user_id)
    assert presence_in_list(api, alice, bob) == {"status": "online", "last_seen": None}
    assert presence_in_list(api, bob, alice) == {"status": "online", "last_seen": None}


def test_the_list_shows_presence_of_direct_peers_only(
    api: ApiClient, users: Users, sockets: Sockets
) -> None:
    alice, bob = users(2)
    api.create_group(alice.token, "pair", [bob.user_id])
    a = connect(sockets, alice)
    befriend(sockets, a, bob)
    listed = {c["kind"]: c for c in api.conversations(alice.token)["conversations"]}
    assert listed["direct"]["presence"] == {"status": "offline", "last_seen": None}
    assert "presence" not in listed["group"]
