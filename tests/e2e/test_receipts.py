"""The ``read`` frame and ``receipt`` frames over real sockets against the
embedded default (CONTRACT.md, WebSocket additions): marks that never move
back, who hears of them, coalescing, and frames that are not the reader's."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
import websocket

from imchat.client import ApiClient, Session
from tests.support.sockets import RawSocket, Sockets

pytestmark = pytest.mark.e2e

Users = Callable[[int], list[Session]]
Frame = dict[str, Any]
# A receipt due now goes out within a tick (0.1 s) of the coalescer; this
# leaves room for a loaded machine, and stays under the 1 s window, so a
# quiet wait of it proves that no first receipt was due.
RECEIPT_WAIT = 1.5


def receipt(conversation_id: str, user_id: str, delivered: int, read: int) -> Frame:
    return {
        "type": "receipt",
        "conversation_id": conversation_id,
        "user_id": user_id,
        "delivered_seq": delivered,
        "read_seq": read,
    }


def sent(conn: RawSocket, to: str, count: int, prefix: str = "m") -> list[Frame]:
    """``count`` direct messages from ``conn``, each acked before the next."""
    acks = []
    for i in range(count):
        conn.send({"type": "send", "id": f"{prefix}{i}", "to": to, "body": f"{prefix} {i}"})
        acks.append(conn.recv_type("ack"))
    return acks


def frames_within(conn: RawSocket, seconds: float) -> list[Frame]:
    """Every frame that arrives in the next ``seconds``."""
    deadline = time.monotonic() + seconds
    frames = []
    while (left := deadline - time.monotonic()) > 0:
        try:
            frames.append(conn.recv(left))
        except websocket.WebSocketTimeoutException:
            break
    return frames


def marks(api: ApiClient, user: Session, conversation_id: str) -> tuple[int, int, int]:
    """(delivered_seq, read_seq, unread) of ``user`` in the conversation, over HTTP."""
    found = api.conversation(user.token, conversation_id)
    return found["delivered_seq"], found["read_seq"], found["unread"]


# ------------------------------------------------------------------ marks
def test_read_moves_both_marks_and_never_back(
    api: ApiClient, users: Users, sockets: Sockets
) -> None:
    alice, bob = users(2)
    acks = sent(sockets.raw(alice), bob.user_id, 3)
    conversation_id = acks[0]["conversation_id"]
    at_bob = sockets.raw(bob, synced=None)
    assert [m["seq"] for m in [at_bob.recv_type("msg") for _ in range(3)]] == [1, 2, 3]
    assert at_bob.recv() == {"type": "synced", "count": 3}
    assert marks(api, bob, conversation_id) == (0, 0, 3)

    at_bob.send({"type": "read", "conversation_id": conversation_id, "seq": 2})
    at_bob.ping()
    assert marks(api, bob, conversation_id) == (2, 2, 1)

    at_bob.send({"type": "read", "conversation_id": conversation_id, "seq": 1})
    at_bob.send({"type": "delivered", "conversation_id": conversation_id, "seq": 1})
    at_bob.ping()
    assert marks(api, bob, conversation_id) == (2, 2, 1)

    at_bob.send({"type": "read", "conversation_id": conversation_id, "seq": 3})
    at_bob.ping()
    assert marks(api, bob, conversation_id) == (3, 3, 0)
    # Read implies delivered: nothing is pending any more.
    assert sockets.raw(bob, synced=None).recv() == {"type": "synced", "count": 0}
    # The sender's own marks did not move with the reader's.
    assert marks(api, alice, conversation_id) == (0, 0, 0)


# --------------------------------------------------- who gets a receipt
def test_read_sends_a_receipt_to_the_sender_and_the_readers_other_connections(
    users: Users, sockets: Sockets
) -> None:
    alice, bob = users(2)
    a1, a2 = sockets.raw(alice), sockets.raw(alice)
    b1, b2 = sockets.raw(bob), sockets.raw(bob)
    acks = sent(a1, bob.user_id, 2)
    conversation_id = acks[0]["conversation_id"]
    for conn in (a2, b1, b2):  # the sender's other connection gets its messages too
        assert [conn.recv_type("msg")["seq"] for _ in range(2)] == [1, 2]

    b1.send({"type": "read", "conversation_id": conversation_id, "seq": 2})
    expected = receipt(conversation_id, bob.user_id, 2, 2)
    for conn in (a1, a2, b2):
        assert conn.recv(RECEIPT_WAIT) == expected
    # The reading connection knows its marks: it hears of nothing.
    b1.ping()
    b1.assert_quiet(RECEIPT_WAIT)
    for conn in (a1, a2, b2):
        conn.assert_quiet(0.2)


def test_delivered_sends_the_delivered_tick_to_the_peer(users: Users, sockets: Sockets) -> None:
    alice, bob = users(2)
    a, b = sockets.raw(alice), sockets.raw(bob)
    conversation_id = sent(a, bob.user_id, 1)[0]["conversation_id"]
    assert b.recv_type("msg")["seq"] == 1

    b.send({"type": "delivered", "conversation_id": conversation_id, "seq": 1})
    assert a.recv(RECEIPT_WAIT) == receipt(conversation_id, bob.user_id, 1, 0)
    b.ping()
    b.assert_quiet(RECEIPT_WAIT)


def test_a_mark_that_does_not_move_sends_no_receipt(users: Users, sockets: Sockets) -> None:
    """A lower seq, a second window later, changes nothing: nobody hears of it."""
    alice, bob = users(2)
    a, b = sockets.raw(alice), sockets.raw(bob)
    conversation_id = sent(a, bob.user_id, 3)[0]["conversation_id"]
    assert [b.recv_type("msg")["seq"] for _ in range(3)] == [1, 2, 3]
    b.send({"type": "read", "conversation_id": conversation_id, "seq": 3})
    assert a.recv(RECEIPT_WAIT) == receipt(conversation_id, bob.user_id, 3, 3)
    time.sleep(1.1)  # out of the coalescing window

    b.send({"type": "read", "conversation_id": conversation_id, "seq": 1})
    b.send({"type": "delivered", "conversation_id": conversation_id, "seq": 2})
    a.assert_quiet(RECEIPT_WAIT)


def test_group_read_reaches_the_members_and_group_delivered_does_not(
    api: ApiClient, users: Users, sockets: Sockets
) -> None:
    owner, first, second = users(3)
    # Created before anyone connects: no member_added events on the sockets.
    group = api.create_group(owner.token, "readers", [first.user_id, second.user_id])
    o, f, s = sockets.raw(owner), sockets.raw(first), sockets.raw(second)
    o.send({"type": "send", "id": "g1", "group": group["group_id"], "body": "hello all"})
    conversation_id = o.recv_type("ack")["conversation_id"]
    for conn in (f, s):
        assert conn.recv_type("msg")["seq"] == 1

    f.send({"type": "read", "conversation_id": conversation_id, "seq": 1})
    for conn in (o, s):
        assert conn.recv(RECEIPT_WAIT) == receipt(conversation_id, first.user_id, 1, 1)
    f.ping()

    s.send({"type": "delivered", "conversation_id": conversation_id, "seq": 1})
    for conn in (o, f, s):
        conn.assert_quiet(RECEIPT_WAIT)
    assert marks(api, second, conversation_id) == (1, 0, 1)


# -------------------------------------------------------------- coalescing
def test_a_burst_of_reads_gives_at_most_two_receipts_with_the_latest_marks(
    users: Users, sockets: Sockets
) -> None:
    alice, bob = users(2)
    a = sockets.raw(alice)
    b1, b2 = sockets.raw(bob), sockets.raw(bob)
    conversation_id = sent(a, bob.user_id, 20)[0]["conversation_id"]
    for conn in (b1, b2):
        assert [conn.recv_type("msg")["seq"] for _ in range(20)] == list(range(1, 21))

    for seq in range(1, 21):  # 20 reads in 200 ms
        b1.send({"type": "read", "conversation_id": conversation_id, "seq": seq})
        time.sleep(0.01)
    latest = receipt(conversation_id, bob.user_id, 20, 20)
    for conn in (a, b2):
        got = frames_within(conn, RECEIPT_WAIT)
        assert 1 <= len(got) <= 2, got
        assert all(frame["type"] == "receipt" for frame in got), got
        assert got[-1] == latest
    for conn in (a, b2):
        conn.assert_quiet(1.0)
    b1.ping()
    b1.assert_quiet(0.2)


# ----------------------------------------------------- not the reader's
def test_a_read_of_someone_elses_conversation_is_harmless(
    api: ApiClient, users: Users, sockets: Sockets
) -> None:
    alice, bob, carol = users(3)
    a, b = sockets.raw(alice), sockets.raw(bob)
    conversation_id = sent(a, bob.user_id, 2)[0]["conversation_id"]
    assert [b.recv_type("msg")["seq"] for _ in range(2)] == [1, 2]
    c1, c2 = sockets.raw(carol), sockets.raw(carol)

    for target in (conversation_id, "d:nobody:noone", "g:no-such-group"):
        c1.send({"type": "read", "conversation_id": target, "seq": 2})
        c1.send({"type": "delivered", "conversation_id": target, "seq": 2})
    c1.ping()
    for conn in (a, b, c1, c2):
        conn.assert_quiet(RECEIPT_WAIT)
    # Carol did not become a participant, and bob's marks did not move.
    assert api.conversations(carol.token)["conversations"] == []
    assert marks(api, bob, conversation_id) == (0, 0, 2)


BAD_READS: dict[str, Frame | str] = {
    "no seq": {"type": "read", "conversation_id": "d:a:b"},
    "no conversation": {"type": "read", "seq": 1},
    "seq 0": {"type": "read", "conversation_id": "d:a:b", "seq": 0},
    "negative seq": {"type": "read", "conversation_id": "d:a:b", "seq": -3},
    "seq as a string": {"type": "read", "conversation_id": "d:a:b", "seq": "2"},
    "seq as a float": {"type": "read", "conversation_id": "d:a:b", "seq": 1.5},
    "seq as a bool": {"type": "read", "conversation_id": "d:a:b", "seq": True},
    "seq over 64 bits": {"type": "read", "conversation_id": "d:a:b", "seq": 2**63},
    "empty conversation": {"type": "read", "conversation_id": "", "seq": 1},
    "conversation of 81 chars": {"type": "read", "conversation_id": "d" * 81, "seq": 1},
    "conversation not a string": {"type": "read", "conversation_id": 7, "seq": 1},
    "an unknown field": {"type": "read", "conversation_id": "d:a:b", "seq": 1, "x": 1},
    "lone surrogate": '{"type": "read", "conversation_id": "d:\\ud800", "seq": 1}',
}


@pytest.mark.parametrize("frame", BAD_READS.values(), ids=BAD_READS.keys())
def test_an_invalid_read_gets_bad_request_and_the_connection_stays(
    frame: Frame | str, users: Users, sockets: Sockets
) -> None:
    (alice,) = users(1)
    conn = sockets.raw(alice)
    conn.send(frame)
    error = conn.recv_type("error")
    assert error["code"] == "bad_request", error
    assert isinstance(error["message"], str)
    conn.ping()
