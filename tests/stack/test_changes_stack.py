"""Edits, deletes and reactions on the production path: two gateways, the
consumer on MariaDB, Redis, the broker and etcd. The author on one gateway,
the other participant on the other; the changes come back as ``update``
frames to both, and history holds the current state."""

from __future__ import annotations

from typing import Any

import pytest

from imchat.client import ChatConnection

from .conftest import Stack

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

Frame = dict[str, Any]


def connect(stack: Stack, gateway: int, token: str) -> ChatConnection:
    conn = stack.api(gateway).connect(token)
    conn.wait_synced()
    return conn


def next_update(conn: ChatConnection) -> Frame:
    frame: Frame = conn.updates.get(timeout=conn.timeout)
    return frame


def test_edit_delete_and_react_across_two_gateways(stack: Stack) -> None:
    alice, bob = stack.user(), stack.user()
    with connect(stack, 0, alice.token) as a, connect(stack, 1, bob.token) as b:
        first = a.send("first", to=bob.user_id, cid="s1")
        second = a.send("second", to=bob.user_id, cid="s2")
        assert [b.receive()["seq"] for _ in range(2)] == [1, 2]
        conv = first["conversation_id"]

        edited = a.change("edit", conv, 1, cid="e1", body="first, edited")
        assert (edited["seq"], edited["msg_id"]) == (1, first["msg_id"])
        assert a.change("edit", conv, 1, cid="e1", body="ignored") == edited
        react = b.change("react", conv, 1, cid="r1", emoji="🎉", on=True)
        assert (react["seq"], react["msg_id"]) == (1, first["msg_id"])
        gone = a.change("delete", conv, 2, cid="d1")
        assert (gone["seq"], gone["msg_id"]) == (2, second["msg_id"])

        for conn in (a, b):
            updates = [next_update(conn) for _ in range(3)]
            assert [(u["kind"], u["seq"], u["by"]) for u in updates] == [
                ("edited", 1, alice.user_id),
                ("reaction", 1, bob.user_id),
                ("deleted", 2, alice.user_id),
            ]
            assert updates[1]["message"]["body"] == "first, edited"
            assert updates[1]["message"]["reactions"] == {"🎉": [bob.user_id]}
            assert updates[2]["message"]["body"] is None

    for gateway, user in ((0, bob), (1, alice)):
        history = stack.api(gateway).all_messages(user.token, conv)
        assert [(m["seq"], m["body"], m["deleted"]) for m in history] == [
            (1, "first, edited", False),
            (2, None, True),
        ]
        assert history[0]["edited_at"] is not None
        assert history[0]["reactions"] == {"🎉": [bob.user_id]}
        assert history[1]["reactions"] == {}
