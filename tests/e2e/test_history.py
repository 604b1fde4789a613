"""History over real sockets against the embedded default (CONTRACT.md,
Conversations and history, Guarantees 1 and 6): ``reply_to``, a second
device catching up from the conversation list and history, groups joined
while offline, and pending messages derived from history."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from imchat.client import ApiClient, ChatError, Session
from tests.support.sockets import RawSocket, Sockets

pytestmark = pytest.mark.e2e

Users = Callable[[int], list[Session]]
Frame = dict[str, Any]


def send(conn: RawSocket, cid: str, body: str, **target: Any) -> Frame:
    """A send answered by its ack or its error (the first frame back)."""
    conn.send({"type": "send", "id": cid, "body": body, **target})
    return conn.recv()


def pending_then_synced(conn: RawSocket, count: int) -> list[Frame]:
    msgs = [conn.recv_type("msg") for _ in range(count)]
    assert conn.recv() == {"type": "synced", "count": count}
    return msgs


# --------------------------------------------------------------- reply_to
def test_a_reply_is_acked_and_carries_reply_to_live_and_in_history(
    api: ApiClient, users: Users, sockets: Sockets
) -> None:
    alice, bob = users(2)
    a, b = sockets.raw(alice), sockets.raw(bob)
    for i in (1, 2):
        assert send(a, f"m{i}", f"message {i}", to=bob.user_id)["seq"] == i
        assert "reply_to" not in b.recv_type("msg")

    ack = send(b, "r1", "answering the first", to=alice.user_id, reply_to=1)
    assert (ack["type"], ack["id"], ack["seq"]) == ("ack", "r1", 3)
    msg = a.recv_type("msg")
    assert (msg["msg_id"], msg["seq"], msg["reply_to"]) == (ack["msg_id"], 3, 1)

    for user in (alice, bob):
        history = api.all_messages(user.token, ack["conversation_id"])
        assert [(m["seq"], m["reply_to"]) for m in history] == [(1, None), (2, None), (3, 1)]


def test_a_reply_to_no_message_is_not_found_and_stores_nothing(
    api: ApiClient, users: Users, sockets: Sockets
) -> None:
    alice, bob = users(2)
    a, b = sockets.raw(alice), sockets.raw(bob)
    # Nothing said yet: there is nothing to answer.
    error = send(a, "r0", "to nothing", to=bob.user_id, reply_to=1)
    assert (error["type"], error["code"], error["id"]) == ("error", "not_found", "r0")
    ack = send(a, "m1", "first", to=bob.user_id)
    assert b.recv_type("msg")["seq"] == 1

    for cid, seq in (("r1", 2), ("r2", 999)):
        error = send(a, cid, "to the future", to=bob.user_id, reply_to=seq)
        assert (error["type"], error["code"], error["id"]) == ("error", "not_found", cid)
    b.assert_quiet()
    assert [m["seq"] for m in api.all_messages(bob.token, ack["conversation_id"])] == [1]
    assert send(a, "m2", "second", to=bob.user_id)["seq"] == 2


def test_a_reply_to_a_message_before_the_members_join_is_not_found(
    api: ApiClient, users: Users, sockets: Sockets
) -> None:
    owner, early, late = users(3)
    group = api.create_group(owner.token, "replies", [early.user_id])
    gid = group["group_id"]
    o = sockets.raw(owner)
    assert send(o, "g1", "before you came", group=gid)["seq"] == 1
    api.add_member(owner.token, gid, late.user_id)
    event = o.recv_type("event")
    assert (event["event"], event["user_id"]) == ("member_added", late.user_id)

    at_late = sockets.raw(late)
    error = send(at_late, "l1", "what was that?", group=gid, reply_to=1)
    assert (error["type"], error["code"], error["id"]) == ("error", "not_found", "l1")
    assert send(o, "g2", "welcome", group=gid)["seq"] == 2
    assert at_late.recv_type("msg")["seq"] == 2
    ack = send(at_late, "l2", "thanks", group=gid, reply_to=2)
    assert (ack["type"], ack["seq"]) == ("ack", 3)
    history = api.all_messages(early.token, ack["conversation_id"])
    assert [(m["seq"], m["reply_to"]) for m in history] == [(1, None), (2, None), (3, 2)]


@pytest.mark.parametrize("reply_to", [0, -1, "1", 1.5, True, 2**63])
def test_an_invalid_reply_to_is_a_bad_request(
    reply_to: Any, users: Users, sockets: Sockets
) -> None:
    alice, bob = users(2)
    a = sockets.raw(alice)
    error = send(a, "bad", "hi", to=bob.user_id, reply_to=reply_to)
    assert (error["type"], error["code"], error["id"]) == ("error", "bad_request", "bad")
    a.ping()


# ------------------------------------------------- two devices of one user
def test_a_device_that_was_away_catches_up_from_the_list_and_history(
    api: ApiClient, users: Users, sockets: Sockets
) -> None:
    """Guarantee 6: device A confirms everything while device B is offline;
    B's pending is empty (marks are per user) yet history gives it all."""
    alice, bob, carol = users(3)
    group = api.create_group(carol.token, "both devices", [bob.user_id])
    device_a = sockets.chat(bob)
    a, c = sockets.raw(alice), sockets.raw(carol)
    direct = [send(a, f"d{i}", f"direct {i}", to=bob.user_id) for i in range(130)]
    in_group = [send(c, f"g{i}", f"group {i}", group=group["group_id"]) for i in range(7)]
    got = [device_a.receive() for _ in range(137)]
    last_of = {m["conversation_id"]: m["seq"] for m in got}
    for conversation_id, seq in last_of.items():
        device_a.read(conversation_id, seq)
    device_a.ping()

    device_b = sockets.chat(bob, synced=0)  # nothing pending: A confirmed it all
    listed = {c["conversation_id"]: c for c in api.conversations(bob.token)["conversations"]}
    assert set(listed) == set(last_of)
    for expected in (direct, in_group):
        conversation_id = expected[0]["conversation_id"]
        assert listed[conversation_id]["last_seq"] == len(expected)
        assert listed[conversation_id]["unread"] == 0
        messages = api.all_messages(bob.token, conversation_id)
        assert [m["msg_id"] for m in messages] == [ack["msg_id"] for ack in expected]
        assert [m["seq"] for m in messages] == list(range(1, len(expected) + 1))
    # Paging backwards from the newest gives the same, in ascending pages.
    newest = api.history(bob.token, direct[0]["conversation_id"], limit=100)
    older = api.history(bob.token, direct[0]["conversation_id"], before_seq=31, limit=100)
    assert [m["seq"] for m in newest["messages"]] == list(range(31, 131))
    assert newest["has_more"] is True
    assert ([m["seq"] for m in older["messages"]], older["has_more"]) == (list(range(1, 31)), False)
    assert device_b.messages.empty()


# ---------------------------------------------------- groups joined offline
def test_a_group_joined_while_offline_is_listed_before_anyone_writes(
    api: ApiClient, users: Users, sockets: Sockets
) -> None:
    owner, bob = users(2)
    created = api.create_group(owner.token, "made while you slept", [bob.user_id])
    later = api.create_group(owner.token, "added while you slept", [])
    api.add_member(owner.token, later["group_id"], bob.user_id)

    sockets.chat(bob, synced=0)
    groups = {g["group_id"]: g for g in api.groups(bob.token)}
    assert set(groups) == {created["group_id"], later["group_id"]}
    assert {g["role"] for g in groups.values()} == {"member"}
    listed = api.conversations(bob.token)["conversations"]
    assert {(c["kind"], c["group_id"], c["name"]) for c in listed} == {
        ("group", created["group_id"], "made while you slept"),
        ("group", later["group_id"], "added while you slept"),
    }
    for conversation in listed:
        assert conversation["last_message"] is None
        assert (conversation["last_seq"], conversation["unread"]) == (0, 0)
        found = api.conversation(bob.token, conversation["conversation_id"])
        assert found["conversation_id"] == conversation["conversation_id"]
        assert api.history(bob.token, conversation["conversation_id"]) == {
            "messages": [],
            "has_more": False,
        }


# ----------------------------------------------- pending, now from history
def test_pending_after_a_reconnect_comes_from_history_once_then_synced(
    api: ApiClient, users: Users, sockets: Sockets
) -> None:
    """Guarantee 1: what bob missed is pushed on connect, once, then synced;
    bob's own messages are never pending for bob."""
    alice, bob = users(2)
    first = sockets.raw(bob)
    mine = [send(first, f"b{i}", f"from bob {i}", to=alice.user_id) for i in range(2)]
    first.close()
    a = sockets.raw(alice, synced=None)  # alice never confirmed bob's two
    assert [m["seq"] for m in pending_then_synced(a, 2)] == [1, 2]
    missed = [send(a, f"a{i}", f"from alice {i}", to=bob.user_id) for i in range(4)]

    again = sockets.raw(bob, synced=None)
    pushed = pending_then_synced(again, 4)
    assert [m["msg_id"] for m in pushed] == [ack["msg_id"] for ack in missed]
    assert [m["seq"] for m in pushed] == [3, 4, 5, 6]
    assert {m["from"] for m in pushed} == {alice.user_id}
    again.assert_quiet()  # nothing twice

    # Until delivered they stay pending; after it, nothing is.
    once_more = sockets.raw(bob, synced=None)
    assert [m["seq"] for m in pending_then_synced(once_more, 4)] == [3, 4, 5, 6]
    once_more.send({"type": "delivered", "conversation_id": mine[0]["conversation_id"], "seq": 6})
    once_more.ping()
    assert sockets.raw(bob, synced=None).recv() == {"type": "synced", "count": 0}
    history = api.all_messages(bob.token, mine[0]["conversation_id"])
    assert [m["seq"] for m in history] == [1, 2, 3, 4, 5, 6]


def test_a_non_participant_reads_no_history(api: ApiClient, users: Users, sockets: Sockets) -> None:
    alice, bob, carol = users(3)
    ack = send(sockets.raw(alice), "m", "private", to=bob.user_id)
    with pytest.raises(ChatError) as denied:
        api.history(carol.token, ack["conversation_id"])
    assert denied.value.status == 403
