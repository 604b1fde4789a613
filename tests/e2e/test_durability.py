"""What an ack promises survives a crash of the one embedded process
(CONTRACT.md, Guarantees 1 to 3): the server is SIGKILLed and started again
on the same port and data dir."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.clients import register_users
from tests.support.server import EmbeddedServer
from tests.support.sockets import RawSocket, Sockets

pytestmark = pytest.mark.e2e


@pytest.fixture
def opened(own_server: EmbeddedServer) -> Iterator[Sockets]:
    """Connections to the test's own server, closed after the test."""
    sockets = Sockets(own_server.base_url)
    yield sockets
    sockets.close_all()


def direct_send(conn: RawSocket, cid: str, to: str, body: str) -> dict[str, Any]:
    conn.send({"type": "send", "id": cid, "to": to, "body": body})
    return conn.recv_type("ack")


def test_acked_messages_to_an_offline_user_survive_a_crash(
    own_server: EmbeddedServer, opened: Sockets
) -> None:
    alice, bob = register_users(own_server.base_url, 2)
    sender = opened.raw(alice)
    acks = [direct_send(sender, f"c{i}", bob.user_id, f"before the crash {i}") for i in range(3)]

    own_server.restart(kill=True)

    at_bob = opened.raw(bob, synced=None)
    msgs = [at_bob.recv_type("msg") for _ in acks]
    assert at_bob.recv() == {"type": "synced", "count": 3}
    assert [m["msg_id"] for m in msgs] == [a["msg_id"] for a in acks]
    assert [m["seq"] for m in msgs] == [1, 2, 3]
    assert [m["body"] for m in msgs] == [f"before the crash {i}" for i in range(3)]


def test_seqs_continue_after_a_crash(own_server: EmbeddedServer, opened: Sockets) -> None:
    alice, bob = register_users(own_server.base_url, 2)
    before = opened.raw(alice)
    assert [direct_send(before, f"b{i}", bob.user_id, "x")["seq"] for i in range(3)] == [1, 2, 3]

    own_server.restart(kill=True)

    after = opened.raw(alice)
    # Guarantee 3: no seq reused, none lower, and (no Redis was lost) no gap.
    assert [direct_send(after, f"a{i}", bob.user_id, "y")["seq"] for i in range(2)] == [4, 5]
    at_bob = opened.raw(bob, synced=None)
    assert [at_bob.recv_type("msg")["seq"] for _ in range(5)] == [1, 2, 3, 4, 5]
    assert at_bob.recv() == {"type": "synced", "count": 5}
    # The same conversation from bob's side: his answer takes the next seq.
    assert direct_send(at_bob, "r0", alice.user_id, "z")["seq"] == 6


def test_idempotency_survives_a_crash(own_server: EmbeddedServer, opened: Sockets) -> None:
    alice, bob = register_users(own_server.base_url, 2)
    sender, receiver = opened.chat(alice), opened.chat(bob)
    first = sender.send("exactly once", to=bob.user_id, cid="keep-me")
    msg = receiver.receive()
    assert msg["msg_id"] == first["msg_id"]
    receiver.confirm(msg["conversation_id"], msg["seq"])
    receiver.ping()  # frames are handled in order: the delivered one is done

    own_server.restart(kill=True)

    sender, receiver = opened.chat(alice), opened.chat(bob)
    again = sender.send("exactly once", to=bob.user_id, cid="keep-me")
    assert (again["msg_id"], again["seq"], again["ts"]) == (
        first["msg_id"],
        first["seq"],
        first["ts"],
    )
    new = sender.send("something new", to=bob.user_id, cid="new-one")
    assert new["seq"] == first["seq"] + 1
    # The resend reached nobody: bob's next message is the new one.
    assert receiver.receive()["msg_id"] == new["msg_id"]
