"""Blocks and typing on the production path: two gateway processes, the
consumer and a Celery worker on MariaDB, Redis, the broker and etcd."""

from __future__ import annotations

import queue
import time

import pytest

from imchat.client import ChatConnection, ChatError
from imchat.wire.ids import direct_conversation_id

from .conftest import Stack

pytestmark = [pytest.mark.integration, pytest.mark.e2e]


def connect(stack: Stack, gateway: int, token: str) -> ChatConnection:
    conn = stack.api(gateway).connect(token)
    conn.wait_synced()
    return conn


def test_typing_crosses_gateways_and_stops_at_a_block(stack: Stack) -> None:
    """The typer on gateway 0, the peer on gateway 1: the relay goes through
    etcd's routes and the Redis channel; a block on gateway 1's API stops it
    on gateway 0 (the cache is shared), and the blocked send is forbidden."""
    alice, bob = stack.user(), stack.user()
    conversation_id = direct_conversation_id(alice.user_id, bob.user_id)
    with connect(stack, 0, alice.token) as a, connect(stack, 1, bob.token) as b:
        a.typing(conversation_id)
        expected = {"type": "typing", "conversation_id": conversation_id, "user_id": alice.user_id}
        assert b.typing_frames.get(timeout=5) == expected
        b.typing(conversation_id)
        assert a.typing_frames.get(timeout=5)["user_id"] == bob.user_id

        stack.api(1).block(bob.token, alice.user_id)
        assert stack.api(0).call("GET", "/api/v1/users/me/blocks", token=bob.token) == {
            "blocked": [alice.user_id]
        }
        with pytest.raises(ChatError) as refused:
            a.send("hello?", to=bob.user_id)
        assert refused.value.code == "forbidden"
        b.send("still me", to=alice.user_id)  # the blocker still writes
        assert a.receive()["body"] == "still me"
        time.sleep(2.1)  # out of both throttle windows: only the block can stop a relay
        a.typing(conversation_id)
        b.typing(conversation_id)
        a.ping()
        b.ping()
        for conn in (a, b):
            with pytest.raises(queue.Empty):
                conn.typing_frames.get(timeout=1.5)

        stack.api(0).unblock(bob.token, alice.user_id)
        time.sleep(2.1)
        a.typing(conversation_id)
        assert b.typing_frames.get(timeout=5) == expected
