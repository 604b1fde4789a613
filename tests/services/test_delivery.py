"""The delivery service on the embedded twins: what one bus batch becomes.

Real gateways (two, as two processes would have) with recording sockets
stand at the end of the channel, so each test sees exactly the frames a
client would.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from imchat.backends.base import BusRecord
from imchat.config import Settings
from imchat.container import Services
from imchat.gateway.connection import Connection
from imchat.gateway.hub import Gateway
from imchat.ops import migrate
from imchat.services import groups
from imchat.services.delivery.records import process_records
from imchat.services.pending import load_pending
from imchat.stores import users as user_store
from imchat.wire.bus import MembershipChange, MessageEnvelope
from imchat.wire.ids import direct_conversation_id, group_conversation_id
from imchat.wire.topics import DIRECT_MSG, GROUP_MSG, MEMBERSHIP_CHANGE
from tests.support.recording import RecordingSocket, recorded

pytestmark = pytest.mark.unit
OFFSETS = itertools.count()


class World:
    """alice on two gateways (two devices), bob on the second, carol offline."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self.gw_a, self.gw_b = Gateway(services), Gateway(services)
        for gateway in (self.gw_a, self.gw_b):
            gateway.start()
        self.alice_1 = self.connect(self.gw_a, "alice")
        self.alice_2 = self.connect(self.gw_b, "alice")
        self.bob = self.connect(self.gw_b, "bob")

    def connect(self, gateway: Gateway, user_id: str) -> Connection:
        conn = Connection(RecordingSocket(), user_id)
        gateway.attach(conn)
        conn.finish_sync([])
        conn.ws.frames.clear()  # type: ignore[attr-defined]
        return conn

    def envelope(
        self, to: str | None = None, group: str | None = None, **kw: Any
    ) -> MessageEnvelope:
        conversation = (
            group_conversation_id(group) if group else direct_conversation_id("alice", to or "")
        )
        fields: dict[str, Any] = {
            "msg_id": uuid.uuid4().hex,
            "cid": "c1",
            "sender": "alice",
            "conversation_id": conversation,
            "body": "hello",
            "ts": 1_700_000_000_000,
            "gateway": self.gw_a.gateway_id,
            "conn": self.alice_1.conn_id,
            "to": to,
            "group": group,
            **kw,
        }
        return MessageEnvelope(**fields)

    def deliver(self, *records: tuple[str, str, bytes]) -> None:
        process_records(
            self.services,
            [BusRecord(topic, 0, next(OFFSETS), key, value) for topic, key, value in records],
        )


def frames(conn: Connection, kind: str) -> list[dict[str, Any]]:
    return recorded(conn, kind)


@pytest.fixture
def world(settings: Settings) -> Iterator[World]:
    migrate.upgrade(settings)
    services = Services(settings)
    with services.db.session() as session:
        for user_id in ("alice", "bob", "carol"):
            user_store.insert(session, user_id, user_id, "x", datetime.now(UTC))
    world = World(services)
    yield world
    for gateway in (world.gw_a, world.gw_b):
        gateway.stop()
    services.close()


def direct(envelope: MessageEnvelope) -> tuple[str, str, bytes]:
    return DIRECT_MSG.name, envelope.conversation_id, envelope.encode()


def test_a_direct_message_is_acked_stored_and_pushed(world: World) -> None:
    envelope = world.envelope(to="bob")
    world.deliver(direct(envelope))

    [ack] = frames(world.alice_1, "ack")
    assert (ack["id"], ack["msg_id"], ack["seq"]) == ("c1", envelope.msg_id, 1)
    assert frames(world.alice_2, "ack") == [] and frames(world.bob, "ack") == []
    [got] = frames(world.bob, "msg")
    assert (got["from"], got["to"], got["body"], got["seq"]) == ("alice", "bob", "hello", 1)
    # The sender's other device gets it too; the sending connection does not.
    assert [m["msg_id"] for m in frames(world.alice_2, "msg")] == [envelope.msg_id]
    assert frames(world.alice_1, "msg") == []
    assert [f.msg_id for f in load_pending(world.services, "bob")] == [envelope.msg_id]
    assert load_pending(world.services, "alice") == []


def test_a_resend_under_a_new_msg_id_gets_the_first_ack_and_nothing_else(world: World) -> None:
    first = world.envelope(to="bob")
    world.deliver(direct(first))
    world.deliver(direct(world.envelope(to="bob")))  # same sender and cid, new msg_id

    acks = frames(world.alice_1, "ack")
    assert [(a["msg_id"], a["seq"]) for a in acks] == [(first.msg_id, 1)] * 2
    assert len(frames(world.bob, "msg")) == 1
    assert len(load_pending(world.services, "bob")) == 1


def test_a_replayed_batch_assigns_the_same_seqs_and_reaches_each_socket_once(world: World) -> None:
    batch = [direct(world.envelope(to="bob", cid=f"c{i}")) for i in range(3)]
    world.deliver(*batch)
    world.deliver(*batch)  # the consumer crashed before committing its offsets

    assert [a["seq"] for a in frames(world.alice_1, "ack")] == [1, 2, 3, 1, 2, 3]
    assert [m["seq"] for m in frames(world.bob, "msg")] == [1, 2, 3]
    assert [f.seq for f in load_pending(world.services, "bob")] == [1, 2, 3]


def test_a_group_message_goes_to_every_member_but_the_sender(world: World) -> None:
    group = groups.create_group(world.services, "alice", "team", ["bob", "carol"])
    envelope = world.envelope(group=group.group_id)
    world.deliver((GROUP_MSG.name, envelope.conversation_id, envelope.encode()))

    [got] = frames(world.bob, "msg")
    assert (got["group"], got["seq"], "to" in got) == (group.group_id, 1, False)
    assert frames(world.alice_1, "msg") == [] and len(frames(world.alice_2, "msg")) == 1
    # carol is offline: nothing pushed, the message waits for her.
    assert [f.msg_id for f in load_pending(world.services, "carol")] == [envelope.msg_id]
    assert len(load_pending(world.services, "bob")) == 1
    assert load_pending(world.services, "alice") == []


def test_a_membership_change_reaches_the_members_and_the_member_concerned(world: World) -> None:
    change = MembershipChange("member_removed", "g1", "bob", "member", "alice", 7, ["alice"], 1)
    world.deliver((MEMBERSHIP_CHANGE.name, "g1", change.encode()))

    for conn in (world.alice_1, world.alice_2, world.bob):
        [event] = frames(conn, "event")
        assert event == {
            "type": "event",
            "event": "member_removed",
            "group": "g1",
            "user_id": "bob",
            "role": "member",
            "actor_id": "alice",
            "ts": 7,
        }


def test_an_undecodable_record_is_dropped_and_the_rest_delivered(world: World) -> None:
    good = world.envelope(to="bob")
    world.deliver(
        (DIRECT_MSG.name, good.conversation_id, b"\xff not json"),
        (MEMBERSHIP_CHANGE.name, "g1", b'{"event": "member_added"}'),
        direct(good),
    )
    assert [m["msg_id"] for m in frames(world.bob, "msg")] == [good.msg_id]
    assert frames(world.bob, "event") == []


def test_a_user_connected_nowhere_is_sent_nothing_but_keeps_the_message(world: World) -> None:
    world.bob.closed = True
    world.gw_b.detach(world.bob)
    envelope = world.envelope(to="bob")
    world.deliver(direct(envelope))
    assert frames(world.bob, "msg") == []
    assert [f.seq for f in load_pending(world.services, "bob")] == [1]
