"""Receipts: at most one per user and conversation per second, the latest marks,
to the right people (the coalescer driven by hand with its own clock)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from imchat.config import Settings
from imchat.container import Services
from imchat.gateway.connection import Connection
from imchat.gateway.hub import Gateway
from imchat.services import groups
from imchat.stores import conversations as conversation_store
from imchat.wire.ids import direct_conversation_id
from tests.support.embedded import add_users, migrated_services
from tests.support.recording import connect, recorded

pytestmark = pytest.mark.unit


def receipts(conn: Connection) -> list[dict[str, Any]]:
    return recorded(conn, "receipt")


@pytest.fixture
def services(settings: Settings) -> Iterator[Services]:
    services = migrated_services(settings)
    add_users(services, "alice", "bob", "carol")
    with services.db.session() as session:
        conversation_store.add_direct_members(session, [(DIRECT, "alice", "bob")])
    yield services
    services.close()


DIRECT = direct_conversation_id("alice", "bob")


@pytest.fixture
def gateway(services: Services) -> Iterator[Gateway]:
    gateway = Gateway(services)
    gateway.start()
    gateway.receipts.stop()  # flushed by hand below, with a clock of the test's own
    yield gateway
    gateway.stop()


def test_a_burst_gives_one_receipt_now_and_the_latest_after_the_window(gateway: Gateway) -> None:
    alice, bob, bob_phone = (connect(gateway, u) for u in ("alice", "bob", "bob"))
    for seq in range(1, 21):
        gateway.receipts.note("bob", DIRECT, seq, seq, bob.conn_id)
        if seq == 1:
            assert gateway.receipts.flush(now=100.0) == 1
    assert gateway.receipts.flush(now=100.5) == 0  # inside the window: held back
    assert gateway.receipts.flush(now=101.0) == 1  # the latest marks, once

    for conn in (alice, bob_phone):
        marks = [(r["delivered_seq"], r["read_seq"]) for r in receipts(conn)]
        assert marks == [(1, 1), (20, 20)]
        assert {r["user_id"] for r in receipts(conn)} == {"bob"}
    assert receipts(bob) == [], "the reading connection knows its own marks"


def test_marks_in_a_receipt_never_go_back(gateway: Gateway, services: Services) -> None:
    alice = connect(gateway, "alice")
    with services.db.session() as session:
        conversation_store.record_activity(
            session, {DIRECT: conversation_store.Activity("direct", None, 10, 1)}
        )
    gateway.confirmations.add("bob", DIRECT, 9, 7)  # written at once (inline jobs)
    gateway.receipts.note("bob", DIRECT, 3, 2, None)
    gateway.receipts.flush(now=10.0)
    [receipt] = receipts(alice)
    assert (receipt["delivered_seq"], receipt["read_seq"]) == (9, 7)


def test_nobody_hears_of_marks_in_a_conversation_that_is_not_theirs(
    gateway: Gateway,
) -> None:
    alice, bob = connect(gateway, "alice"), connect(gateway, "bob")
    carol = connect(gateway, "carol")
    gateway.receipts.note("carol", DIRECT, 5, 5, carol.conn_id)
    assert gateway.receipts.flush(now=10.0) == 1
    assert receipts(alice) == receipts(bob) == receipts(carol) == []


def test_a_group_read_reaches_the_members_a_delivered_only_the_readers_devices(
    gateway: Gateway, services: Services
) -> None:
    group = groups.create_group(services, "alice", "team", ["bob", "carol"])
    conversation = f"g:{group.group_id}"
    alice, bob, carol = (connect(gateway, u) for u in ("alice", "bob", "carol"))

    gateway.receipts.note("bob", conversation, 4, 0, bob.conn_id)
    assert gateway.receipts.flush(now=10.0) == 0  # bob has no other connection: nothing to say
    bob_phone = connect(gateway, "bob")
    gateway.receipts.note("bob", conversation, 5, 0, bob.conn_id)
    gateway.receipts.flush(now=20.0)
    assert receipts(alice) == receipts(carol) == []
    assert len(receipts(bob_phone)) == 1

    gateway.receipts.note("bob", conversation, 5, 5, bob.conn_id)
    gateway.receipts.flush(now=30.0)
    assert [r["read_seq"] for r in receipts(alice)] == [5]
    assert [r["read_seq"] for r in receipts(carol)] == [5]


def test_a_direct_conversation_shows_the_peers_marks(services: Services) -> None:
    """Read ticks survive a reload: the conversation carries the other user's marks."""
    from imchat.services import conversations

    with services.db.session() as session:
        conversation_store.record_activity(
            session, {DIRECT: conversation_store.Activity("direct", None, 3, 1)}
        )
        conversation_store.move_marks(session, "bob", DIRECT, 3, 2)
    seen_by_alice = conversations.get_conversation(services, "alice", DIRECT)
    assert (seen_by_alice["peer_delivered_seq"], seen_by_alice["peer_read_seq"]) == (3, 2)
    seen_by_bob = conversations.get_conversation(services, "bob", DIRECT)
    assert (seen_by_bob["peer_delivered_seq"], seen_by_bob["peer_read_seq"]) == (0, 0)
    assert (seen_by_bob["delivered_seq"], seen_by_bob["read_seq"]) == (3, 2)


def test_a_mark_never_passes_the_last_message(services: Services) -> None:
    """A mark set ahead of the conversation would hide the messages still to come."""
    with services.db.session() as session:
        conversation_store.record_activity(
            session, {DIRECT: conversation_store.Activity("direct", None, 4, 1)}
        )
        assert conversation_store.move_marks(session, "bob", DIRECT, 1_000, 900)
        member = conversation_store.membership(session, "bob", DIRECT)
        assert member is not None
        assert (member.delivered_seq, member.read_seq) == (4, 4)
        assert not conversation_store.move_marks(session, "bob", "d:nobody:else", 5, 5)
