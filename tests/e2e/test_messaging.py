"""Messaging over real sockets against the embedded default (CONTRACT.md,
WebSocket and Guarantees): acks, msgs, seqs, idempotency, pending messages,
several connections per user, groups and their events."""

from __future__ import annotations

import queue
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from imchat.client import ApiClient, ChatConnection, Session
from tests.support.sockets import QUIET, RawSocket, Sockets

pytestmark = pytest.mark.e2e

Users = Callable[[int], list[Session]]
Frame = dict[str, Any]


def now_ms() -> int:
    return int(time.time() * 1000)


def assert_no_message(conn: ChatConnection, seconds: float = QUIET) -> None:
    try:
        frame = conn.receive(timeout=seconds)
    except queue.Empty:
        return
    pytest.fail(f"unexpected msg {frame}")


def wait_event(conn: ChatConnection, event: str, group: str, user_id: str) -> Frame:
    """The ``event`` frame about ``user_id`` in ``group``; others (the group's
    creation also announces member_added) are skipped."""
    deadline = time.monotonic() + 5
    seen = []
    while time.monotonic() < deadline:
        try:
            frame = conn.receive_event(timeout=max(deadline - time.monotonic(), 0.01))
        except queue.Empty:
            break
        if (frame["event"], frame["group"], frame["user_id"]) == (event, group, user_id):
            return frame
        seen.append(frame)
    pytest.fail(f"no {event} event for {user_id} in {group}; got {seen}")


def pending_then_synced(conn: RawSocket, count: int) -> list[Frame]:
    """The first frames of a connect: ``count`` msgs, then synced{count}."""
    msgs = [conn.recv_type("msg") for _ in range(count)]
    assert conn.recv() == {"type": "synced", "count": count}
    return msgs


# ------------------------------------------------------------ direct messages
def test_direct_message_ack_and_msg_name_the_same_conversation(
    users: Users, sockets: Sockets
) -> None:
    alice, bob = users(2)
    to_bob, at_bob = sockets.chat(alice), sockets.chat(bob)

    before = now_ms()
    ack = to_bob.send("hello bob", to=bob.user_id, cid="c-1")
    after = now_ms()
    msg = at_bob.receive()

    assert ack["type"] == "ack" and ack["id"] == "c-1"
    assert isinstance(ack["msg_id"], str) and ack["msg_id"]
    assert isinstance(ack["conversation_id"], str) and ack["conversation_id"]
    assert ack["seq"] == 1
    # Milliseconds since the epoch, taken while the send was in flight.
    assert isinstance(ack["ts"], int) and before - 1000 <= ack["ts"] <= after + 1000
    # Extra fields are allowed: compare the contract's ones.
    assert {k: msg.get(k) for k in _MSG_FIELDS} == {
        "type": "msg",
        "msg_id": ack["msg_id"],
        "conversation_id": ack["conversation_id"],
        "seq": 1,
        "from": alice.user_id,
        "to": bob.user_id,
        "body": "hello bob",
        "ts": ack["ts"],
    }
    assert "group" not in msg

    # Guarantee 4: bob answering lands in the very same conversation.
    reply = at_bob.send("hi alice", to=alice.user_id)
    assert reply["conversation_id"] == ack["conversation_id"]
    assert reply["seq"] == 2
    back = to_bob.receive()
    assert (back["from"], back["to"], back["seq"]) == (bob.user_id, alice.user_id, 2)


_MSG_FIELDS = {"type", "msg_id", "conversation_id", "seq", "from", "to", "body", "ts"}


def test_seqs_start_at_one_and_grow_by_exactly_one(users: Users, sockets: Sockets) -> None:
    alice, bob = users(2)
    sender, receiver = sockets.chat(alice), sockets.chat(bob)

    seqs = [sender.send(f"m{i}", to=bob.user_id)["seq"] for i in range(5)]
    received = [receiver.receive() for _ in range(5)]

    assert seqs == [1, 2, 3, 4, 5]
    assert [m["seq"] for m in received] == [1, 2, 3, 4, 5]
    assert [m["body"] for m in received] == [f"m{i}" for i in range(5)]


def test_pipelined_sends_are_acked_in_order_with_increasing_seqs(
    users: Users, sockets: Sockets
) -> None:
    alice, bob = users(2)
    sender, receiver = sockets.raw(alice), sockets.chat(bob)

    cids = [f"pipe-{i}" for i in range(20)]
    for i, cid in enumerate(cids):
        sender.send({"type": "send", "id": cid, "to": bob.user_id, "body": f"m{i}"})
    acks = [sender.recv_type("ack") for _ in cids]

    assert [a["id"] for a in acks] == cids
    assert [a["seq"] for a in acks] == list(range(1, 21))
    assert [receiver.receive()["seq"] for _ in cids] == list(range(1, 21))


def test_resending_a_cid_is_idempotent(users: Users, sockets: Sockets) -> None:
    alice, bob = users(2)
    sender, receiver = sockets.chat(alice), sockets.chat(bob)

    first = sender.send("once", to=bob.user_id, cid="same-cid")
    assert receiver.receive()["msg_id"] == first["msg_id"]
    again = sender.send("once", to=bob.user_id, cid="same-cid")

    assert (again["msg_id"], again["seq"], again["ts"]) == (
        first["msg_id"],
        first["seq"],
        first["ts"],
    )
    assert_no_message(receiver)
    # The resend did not use up a seq either.
    assert sender.send("next", to=bob.user_id)["seq"] == first["seq"] + 1


def test_unknown_recipient_is_not_found(users: Users, sockets: Sockets) -> None:
    (alice,) = users(1)
    conn = sockets.raw(alice)
    conn.send({"type": "send", "id": "to-nobody", "to": uuid.uuid4().hex, "body": "hello?"})

    error = conn.recv_type("error")
    assert (error["code"], error["id"]) == ("not_found", "to-nobody")
    conn.ping()


# ----------------------------------------------------------- pending messages
def test_offline_recipient_gets_pending_messages_in_order_then_synced(
    users: Users, sockets: Sockets
) -> None:
    alice, bob = users(2)
    sender = sockets.chat(alice)
    acks = [sender.send(f"while away {i}", to=bob.user_id) for i in range(5)]

    msgs = pending_then_synced(sockets.raw(bob, synced=None), 5)

    assert [m["seq"] for m in msgs] == [1, 2, 3, 4, 5]
    assert [m["msg_id"] for m in msgs] == [a["msg_id"] for a in acks]
    assert [m["body"] for m in msgs] == [f"while away {i}" for i in range(5)]
    assert all(m["from"] == alice.user_id and m["to"] == bob.user_id for m in msgs)
    assert all(m["ts"] == a["ts"] for m, a in zip(msgs, acks, strict=True))


def test_delivered_up_to_the_last_seq_leaves_nothing_pending(
    users: Users, sockets: Sockets
) -> None:
    alice, bob = users(2)
    sender = sockets.chat(alice)
    for i in range(3):
        sender.send(f"m{i}", to=bob.user_id)

    first = sockets.raw(bob, synced=None)
    msgs = pending_then_synced(first, 3)
    first.send({"type": "delivered", "conversation_id": msgs[-1]["conversation_id"], "seq": 3})
    first.ping()  # frames are handled in order: the delivered one is done
    first.close()

    again = sockets.raw(bob, synced=None)
    assert again.recv() == {"type": "synced", "count": 0}


def test_partial_delivered_leaves_the_rest_pending(users: Users, sockets: Sockets) -> None:
    alice, bob = users(2)
    sender = sockets.chat(alice)
    for i in range(5):
        sender.send(f"m{i}", to=bob.user_id)

    first = sockets.raw(bob, synced=None)
    msgs = pending_then_synced(first, 5)
    first.send({"type": "delivered", "conversation_id": msgs[0]["conversation_id"], "seq": 2})
    first.ping()
    first.close()

    rest = pending_then_synced(sockets.raw(bob, synced=None), 3)
    assert [m["seq"] for m in rest] == [3, 4, 5]


def test_live_messages_stay_pending_until_delivered(users: Users, sockets: Sockets) -> None:
    alice, bob = users(2)
    sender, receiver = sockets.chat(alice), sockets.raw(bob)
    sender.send("seen live", to=bob.user_id)
    assert receiver.recv_type("msg")["seq"] == 1
    receiver.close()

    # Receiving it live is not a delivery mark: it comes again until confirmed.
    again = pending_then_synced(sockets.raw(bob, synced=None), 1)
    assert again[0]["body"] == "seen live"


def test_own_messages_are_not_pending_for_the_sender(users: Users, sockets: Sockets) -> None:
    alice, bob = users(2)
    sender = sockets.raw(alice)
    for i in range(3):
        sender.send({"type": "send", "id": f"own-{i}", "to": bob.user_id, "body": "x"})
        sender.recv_type("ack")
    sender.close()

    assert sockets.raw(alice, synced=None).recv() == {"type": "synced", "count": 0}


# --------------------------------------------------- several connections
def test_every_connection_of_both_users_sees_the_message(users: Users, sockets: Sockets) -> None:
    alice, bob = users(2)
    alice_tab, alice_phone = sockets.chat(alice), sockets.chat(alice)
    bob_tab, bob_phone = sockets.chat(bob), sockets.chat(bob)

    ack = alice_tab.send("to every device", to=bob.user_id)

    for conn in (bob_tab, bob_phone, alice_phone):
        msg = conn.receive()
        assert (msg["msg_id"], msg["seq"], msg["from"], msg["to"]) == (
            ack["msg_id"],
            1,
            alice.user_id,
            bob.user_id,
        )
    # The sending connection has the ack; a msg copy would be a duplicate.
    assert_no_message(alice_tab)
    for conn in (bob_tab, bob_phone, alice_phone):
        assert_no_message(conn, 0.05)


# -------------------------------------------------------------------- groups
def test_group_message_reaches_every_member(api: ApiClient, users: Users, sockets: Sockets) -> None:
    owner, bob, carol = users(3)
    group = api.create_group(owner.token, "trio", [bob.user_id, carol.user_id])
    gid = group["group_id"]
    assert group["member_count"] == 3
    at_owner, at_bob, at_carol = (sockets.chat(u) for u in (owner, bob, carol))

    ack = at_owner.send("hello group", group=gid)
    assert ack["seq"] == 1
    for conn in (at_bob, at_carol):
        msg = conn.receive()
        assert {k: msg[k] for k in ("msg_id", "conversation_id", "seq", "from", "group")} == {
            "msg_id": ack["msg_id"],
            "conversation_id": ack["conversation_id"],
            "seq": 1,
            "from": owner.user_id,
            "group": gid,
        }
        assert msg["body"] == "hello group" and msg["ts"] == ack["ts"]
        assert "to" not in msg
    assert_no_message(at_owner)

    # Any member may send, in the same conversation.
    reply = at_carol.send("hi all", group=gid)
    assert (reply["conversation_id"], reply["seq"]) == (ack["conversation_id"], 2)
    for conn in (at_owner, at_bob):
        assert conn.receive()["seq"] == 2


def test_group_messages_wait_for_offline_members(
    api: ApiClient, users: Users, sockets: Sockets
) -> None:
    owner, bob = users(2)
    gid = api.create_group(owner.token, "duo", [bob.user_id])["group_id"]
    sender = sockets.chat(owner)
    for i in range(2):
        sender.send(f"g{i}", group=gid)

    msgs = pending_then_synced(sockets.raw(bob, synced=None), 2)
    assert [(m["group"], m["seq"]) for m in msgs] == [(gid, 1), (gid, 2)]


def test_non_member_may_not_send_to_a_group(api: ApiClient, users: Users, sockets: Sockets) -> None:
    owner, bob, outsider = users(3)
    gid = api.create_group(owner.token, "closed", [bob.user_id])["group_id"]
    at_bob = sockets.chat(bob)
    conn = sockets.raw(outsider)

    conn.send({"type": "send", "id": "sneak-in", "group": gid, "body": "let me in"})

    error = conn.recv_type("error")
    assert (error["code"], error["id"]) == ("forbidden", "sneak-in")
    conn.ping()
    assert_no_message(at_bob)


def test_unknown_group_is_not_found(users: Users, sockets: Sockets) -> None:
    (alice,) = users(1)
    conn = sockets.raw(alice)
    conn.send({"type": "send", "id": "to-void", "group": uuid.uuid4().hex, "body": "anyone?"})

    error = conn.recv_type("error")
    assert (error["code"], error["id"]) == ("not_found", "to-void")
    conn.ping()


def test_membership_changes_are_announced_to_every_member(
    api: ApiClient, users: Users, sockets: Sockets
) -> None:
    owner, bob, carol = users(3)
    gid = api.create_group(owner.token, "changing", [bob.user_id])["group_id"]
    at_owner, at_bob, at_carol = (sockets.chat(u) for u in (owner, bob, carol))

    api.add_member(owner.token, gid, carol.user_id)
    for conn in (at_owner, at_bob, at_carol):  # the added member included
        event = wait_event(conn, "member_added", gid, carol.user_id)
        assert event["type"] == "event"

    api.remove_member(owner.token, gid, bob.user_id)
    for conn in (at_owner, at_bob, at_carol):  # the removed member included
        wait_event(conn, "member_removed", gid, bob.user_id)

    # The membership took effect for messages too.
    at_carol.send("i am in", group=gid)
    assert at_owner.receive()["body"] == "i am in"
    assert_no_message(at_bob)
