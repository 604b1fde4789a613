"""History, marks and receipts on the production path (CONTRACT.md,
Conversations and history, Guarantees 2 and 6): two gateways, the consumer
and a Celery worker on MariaDB, Redis, the broker and etcd."""

from __future__ import annotations

import queue
import time
from typing import Any

import pytest

from imchat.client import ChatConnection

from .conftest import Stack

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

Frame = dict[str, Any]
# Marks go through the gateway's batch and a Celery task: a moment, not at once.
MARKS_LAND = 15.0


def connect(stack: Stack, gateway: int, token: str) -> ChatConnection:
    conn = stack.api(gateway).connect(token)
    conn.wait_synced()
    return conn


def frames_within(frames: queue.Queue[Frame], seconds: float) -> list[Frame]:
    """Every frame put on ``frames`` in the next ``seconds``."""
    deadline = time.monotonic() + seconds
    got = []
    while (left := deadline - time.monotonic()) > 0:
        try:
            got.append(frames.get(timeout=left))
        except queue.Empty:
            break
    return got


def wait_nothing_pending(stack: Stack, gateway: int, token: str) -> None:
    """Until a connect on ``gateway`` finds no pending message (the marks landed)."""
    deadline = time.monotonic() + MARKS_LAND
    while True:
        with stack.api(gateway).connect(token) as conn:
            if conn.wait_synced() == 0:
                return
        assert time.monotonic() < deadline, "the delivered marks never landed"
        time.sleep(0.2)


# ----------------------------------------------- guarantee 2, Redis lost
def test_a_resend_after_redis_lost_every_key_gets_the_first_ack(stack: Stack) -> None:
    """The issue's example: acked as seq 1, FLUSHDB, the same frame again:
    the first ack comes back and the recipient has the message once."""
    alice, bob = stack.user(), stack.user()
    with connect(stack, 0, alice.token) as a, connect(stack, 1, bob.token) as b:
        first = a.send("only once", to=bob.user_id, cid="idem-across-flush")
        assert first["seq"] == 1
        assert b.receive()["msg_id"] == first["msg_id"]
        stack.redis().flushdb()

        again = a.send("only once", to=bob.user_id, cid="idem-across-flush")
        assert (again["msg_id"], again["seq"]) == (first["msg_id"], first["seq"])
        assert again["conversation_id"] == first["conversation_id"]
        later = a.send("a new one", to=bob.user_id, cid="after-the-flush")
        assert later["seq"] > first["seq"]
        live = [m["msg_id"] for m in frames_within(b.messages, 3.0)]
    assert live == [later["msg_id"]], "the resend reached bob a second time"

    expected = [first["msg_id"], later["msg_id"]]
    with stack.api(0).connect(bob.token) as pending:  # bob confirmed nothing
        assert pending.wait_synced() == 2
        assert [pending.receive()["msg_id"] for _ in range(2)] == expected
    history = stack.api(1).all_messages(bob.token, first["conversation_id"])
    assert [m["msg_id"] for m in history] == expected


# ------------------------------------------- guarantee 6, two devices
def test_a_device_that_was_away_catches_up_through_either_gateway(stack: Stack) -> None:
    alice, bob, carol = stack.user(), stack.user(), stack.user()
    group = stack.api().create_group(carol.token, "two devices", [bob.user_id])
    with connect(stack, 0, bob.token) as device_a:
        with connect(stack, 1, alice.token) as a, connect(stack, 0, carol.token) as c:
            direct = [a.send(f"direct {i}", to=bob.user_id) for i in range(120)]
            in_group = [c.send(f"group {i}", group=group["group_id"]) for i in range(5)]
        got = [device_a.receive(timeout=30) for _ in range(125)]
        for conversation_id, seq in {m["conversation_id"]: m["seq"] for m in got}.items():
            device_a.confirm(conversation_id, seq)
        # Device B comes while A is still connected: nothing is pending for bob.
        wait_nothing_pending(stack, 1, bob.token)

    lists = [stack.api(g).conversations(bob.token)["conversations"] for g in (0, 1)]
    assert lists[0] == lists[1]
    listed = {c["conversation_id"]: c for c in lists[1]}
    for expected in (direct, in_group):
        conversation_id = expected[0]["conversation_id"]
        assert listed[conversation_id]["last_seq"] == len(expected)
        assert listed[conversation_id]["delivered_seq"] == len(expected)
        assert listed[conversation_id]["unread"] == len(expected)  # delivered, not read
        for gateway in (0, 1):
            messages = stack.api(gateway).all_messages(bob.token, conversation_id)
            assert [m["msg_id"] for m in messages] == [ack["msg_id"] for ack in expected]
            assert [m["seq"] for m in messages] == list(range(1, len(expected) + 1))


# ------------------------------------------------ receipts across gateways
def test_a_read_on_one_gateway_reaches_the_sender_on_the_other(stack: Stack) -> None:
    alice, bob = stack.user(), stack.user()
    with (
        connect(stack, 0, alice.token) as a0,
        connect(stack, 1, alice.token) as a1,
        connect(stack, 1, bob.token) as reader,
        connect(stack, 0, bob.token) as other,
    ):
        acks = [a0.send(f"read me {i}", to=bob.user_id) for i in range(3)]
        conversation_id = acks[0]["conversation_id"]
        for conn in (reader, other):
            assert [conn.receive()["seq"] for _ in range(3)] == [1, 2, 3]

        reader.read(conversation_id, 3)
        expected = {
            "type": "receipt",
            "conversation_id": conversation_id,
            "user_id": bob.user_id,
            "delivered_seq": 3,
            "read_seq": 3,
        }
        for conn in (a0, a1, other):
            assert conn.receipts.get(timeout=5) == expected
        assert frames_within(reader.receipts, 1.5) == []

        found = stack.api(0).conversation(bob.token, conversation_id)
        deadline = time.monotonic() + MARKS_LAND
        while (found["delivered_seq"], found["read_seq"]) != (3, 3):
            assert time.monotonic() < deadline, f"the read mark never landed: {found}"
            time.sleep(0.2)
            found = stack.api(0).conversation(bob.token, conversation_id)
        assert found["unread"] == 0


def test_the_delivered_tick_and_a_reply_cross_gateways(stack: Stack) -> None:
    alice, bob = stack.user(), stack.user()
    with connect(stack, 0, alice.token) as a, connect(stack, 1, bob.token) as b:
        ack = a.send("did you get this?", to=bob.user_id)
        assert b.receive()["seq"] == 1
        b.confirm(ack["conversation_id"], 1)
        tick = a.receipts.get(timeout=5)
        assert (tick["user_id"], tick["delivered_seq"], tick["read_seq"]) == (bob.user_id, 1, 0)

        reply = b.send("yes", to=alice.user_id, reply_to=1)
        msg = a.receive()
        assert (msg["msg_id"], msg["seq"], msg["reply_to"]) == (reply["msg_id"], 2, 1)
    history = stack.api(0).all_messages(alice.token, ack["conversation_id"])
    assert [(m["seq"], m["reply_to"]) for m in history] == [(1, None), (2, 1)]
