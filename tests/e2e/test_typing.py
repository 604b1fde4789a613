"""The ``typing`` frame over real sockets against the embedded default
(CONTRACT.md, WebSocket additions): relayed to the other participants only,
throttled, never to or from a block, and bad frames refused."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from imchat.client import ApiClient, Session
from imchat.wire.ids import direct_conversation_id
from tests.support.sockets import RawSocket, Sockets

pytestmark = pytest.mark.e2e

Users = Callable[[int], list[Session]]
Frame = dict[str, Any]
# A relayed typing frame crosses the embedded channel at once; this leaves
# room for a loaded machine.
WAIT = 1.0


def typing(conversation_id: str) -> Frame:
    return {"type": "typing", "conversation_id": conversation_id}


def relayed(conversation_id: str, user: Session) -> Frame:
    return {"type": "typing", "conversation_id": conversation_id, "user_id": user.user_id}


def test_direct_typing_reaches_the_peers_connections_only(users: Users, sockets: Sockets) -> None:
    alice, bob, carol = users(3)
    a1, a2 = sockets.raw(alice), sockets.raw(alice)
    b1, b2 = sockets.raw(bob), sockets.raw(bob)
    c = sockets.raw(carol)
    conversation_id = direct_conversation_id(alice.user_id, bob.user_id)
    a1.send(typing(conversation_id))
    for conn in (b1, b2):
        assert conn.recv(WAIT) == relayed(conversation_id, alice)
    a1.ping()  # no ack, no echo: the next frame is the pong
    for conn in (a2, c):  # the typer's other connection and an outsider: nothing
        conn.assert_quiet()


def test_group_typing_reaches_the_other_current_members(
    api: ApiClient, users: Users, sockets: Sockets
) -> None:
    alice, bob, carol, dave = users(4)
    group = api.create_group(alice.token, "team", [bob.user_id, carol.user_id])["group_id"]
    api.remove_member(alice.token, group, carol.user_id)
    a, b, c, d = (sockets.raw(u) for u in (alice, bob, carol, dave))
    conversation_id = f"g:{group}"
    b.send(typing(conversation_id))
    assert a.recv(WAIT) == relayed(conversation_id, bob)
    b.ping()
    for conn in (c, d):  # a member who left and one who never was
        conn.assert_quiet()


def test_ten_typing_frames_in_a_second_relay_one_and_another_after_two_seconds(
    users: Users, sockets: Sockets
) -> None:
    alice, bob = users(2)
    a, b = sockets.raw(alice), sockets.raw(bob)
    conversation_id = direct_conversation_id(alice.user_id, bob.user_id)
    started = time.monotonic()
    for _ in range(10):
        a.send(typing(conversation_id))
        time.sleep(0.1)
    assert b.recv(WAIT) == relayed(conversation_id, alice)
    b.assert_quiet(max(0.0, 2.0 - (time.monotonic() - started)) + 0.1)
    a.send(typing(conversation_id))
    assert b.recv(WAIT) == relayed(conversation_id, alice)
    b.assert_quiet()


@pytest.mark.parametrize("who_blocks", ["typer", "peer"])
def test_no_typing_across_a_block_either_way(
    api: ApiClient, users: Users, sockets: Sockets, who_blocks: str
) -> None:
    alice, bob, carol = users(3)
    blocker, blocked = (alice, bob) if who_blocks == "typer" else (bob, alice)
    api.block(blocker.token, blocked.user_id)
    group = api.create_group(alice.token, "team", [bob.user_id, carol.user_id])["group_id"]
    a, b, c = (sockets.raw(u) for u in (alice, bob, carol))
    a.send(typing(direct_conversation_id(alice.user_id, bob.user_id)))
    a.send(typing(f"g:{group}"))
    assert c.recv(WAIT) == relayed(f"g:{group}", alice)  # the group's others still hear
    a.ping()
    b.assert_quiet()
    api.unblock(blocker.token, blocked.user_id)
    a.send(typing(direct_conversation_id(bob.user_id, carol.user_id)))  # not alice's
    time.sleep(2.1)  # out of the throttle's window
    a.send(typing(direct_conversation_id(alice.user_id, bob.user_id)))
    assert b.recv(WAIT) == relayed(direct_conversation_id(alice.user_id, bob.user_id), alice)


def test_a_non_participant_relays_nothing(api: ApiClient, users: Users, sockets: Sockets) -> None:
    alice, bob, carol = users(3)
    group = api.create_group(bob.token, "theirs", [carol.user_id])["group_id"]
    a, b, c = (sockets.raw(u) for u in (alice, bob, carol))
    low, high = sorted((bob.user_id, carol.user_id))
    first, second = sorted((alice.user_id, bob.user_id))
    for conversation_id in (
        f"d:{low}:{high}",  # someone else's direct conversation
        f"d:{second}:{first}",  # alice and bob, not in canonical order
        f"d:{alice.user_id}:{alice.user_id}",  # with oneself: nobody else
        f"g:{group}",  # a group one is not in
        "g:no-such-group",
        f"x:{bob.user_id}",
        bob.user_id,
    ):
        a.send(typing(conversation_id))
    a.ping()  # every one handled, none answered
    for conn in (b, c):
        conn.assert_quiet()


def assert_bad_request(conn: RawSocket, frame: Frame | str) -> None:
    conn.send(frame)
    error = conn.recv_type("error")
    assert error["code"] == "bad_request", error
    assert "id" not in error


def test_invalid_typing_frames_get_bad_request_and_the_connection_lives(
    users: Users, sockets: Sockets
) -> None:
    alice, bob = users(2)
    a, b = sockets.raw(alice), sockets.raw(bob)
    for frame in (
        {"type": "typing"},
        {"type": "typing", "conversation_id": ""},
        {"type": "typing", "conversation_id": 7},
        {"type": "typing", "conversation_id": None},
        {"type": "typing", "conversation_id": "x" * 81},
        {"type": "typing", "conversation_id": "\ud800"},
        {"type": "typing", "conversation_id": "d:a:b", "extra": 1},
    ):
        assert_bad_request(a, frame)
    a.ping()
    conversation_id = direct_conversation_id(alice.user_id, bob.user_id)
    a.send(typing(conversation_id))
    assert b.recv(WAIT) == relayed(conversation_id, alice)


def test_the_client_sends_and_receives_typing(users: Users, sockets: Sockets) -> None:
    alice, bob = users(2)
    a, b = sockets.chat(alice), sockets.chat(bob)
    conversation_id = direct_conversation_id(alice.user_id, bob.user_id)
    a.typing(conversation_id)
    assert b.typing_frames.get(timeout=WAIT) == relayed(conversation_id, alice)
