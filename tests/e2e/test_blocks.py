"""Blocks over real sockets against the embedded default: a direct send to
someone who blocked the sender is ``forbidden`` and nothing is accepted;
groups are unaffected."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from imchat.client import ApiClient, ChatError, Session
from imchat.wire.ids import direct_conversation_id
from tests.support.sockets import Sockets

pytestmark = pytest.mark.e2e

Users = Callable[[int], list[Session]]


def test_a_direct_send_to_a_blocker_is_forbidden_and_nothing_is_accepted(
    api: ApiClient, users: Users, sockets: Sockets
) -> None:
    alice, bob = users(2)
    api.block(bob.token, alice.user_id)
    a, b = sockets.raw(alice), sockets.raw(bob)
    a.send({"type": "send", "id": "c1", "to": bob.user_id, "body": "hello?"})
    error = a.recv_type("error")
    assert (error["code"], error["id"]) == ("forbidden", "c1")
    b.ping()
    b.assert_quiet()
    conversation_id = direct_conversation_id(alice.user_id, bob.user_id)
    with pytest.raises(ChatError) as nothing:  # not even the conversation was started
        api.all_messages(bob.token, conversation_id)
    assert nothing.value.status == 404
    # The blocker still writes to the one they block; after an unblock both ways work.
    b.send({"type": "send", "id": "c2", "to": alice.user_id, "body": "I can"})
    assert b.recv_type("ack")["seq"] == 1
    assert a.recv_type("msg")["body"] == "I can"
    api.unblock(bob.token, alice.user_id)
    a.send({"type": "send", "id": "c1", "to": bob.user_id, "body": "hello?"})
    assert a.recv_type("ack")["seq"] == 2
    assert b.recv_type("msg")["body"] == "hello?"
    bodies = [m["body"] for m in api.all_messages(bob.token, conversation_id)]
    assert bodies == ["I can", "hello?"]


def test_group_messages_cross_a_block(api: ApiClient, users: Users, sockets: Sockets) -> None:
    alice, bob = users(2)
    api.block(bob.token, alice.user_id)
    group = api.create_group(bob.token, "shared", [alice.user_id])["group_id"]
    a, b = sockets.raw(alice), sockets.raw(bob)
    a.send({"type": "send", "id": "g1", "group": group, "body": "to all"})
    assert a.recv_type("ack")["seq"] == 1
    assert b.recv_type("msg")["body"] == "to all"
