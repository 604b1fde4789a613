"""The bus consumer sets aside a record it can never deliver, and only that one."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from imchat.config import Settings
from imchat.container import Services
from imchat.ops import migrate
from imchat.services.delivery.consumer import DeliveryConsumer, transient
from imchat.services.pending import load_pending
from imchat.stores import users as user_store
from imchat.wire.bus import MessageEnvelope
from imchat.wire.ids import direct_conversation_id
from imchat.wire.topics import DIRECT_MSG, TOPICS
from tests.support.waiting import wait_for

pytestmark = pytest.mark.unit


def envelope(sender: str, to: str, cid: str) -> bytes:
    return MessageEnvelope(
        msg_id=uuid.uuid4().hex,
        cid=cid,
        sender=sender,
        conversation_id=direct_conversation_id(sender, to),
        body="hi",
        ts=1,
        gateway="gw",
        conn="c",
        to=to,
    ).encode()


def pending_of(services: Services, user_id: str) -> list[int]:
    """The sequence numbers of what waits for ``user_id``."""
    return [f.seq for f in load_pending(services, user_id)]


def test_a_poison_record_is_set_aside_and_the_rest_delivered(settings: Settings) -> None:
    migrate.upgrade(settings)
    services = Services(settings)
    services.bus.ensure_topics(TOPICS, 1, 1)
    with services.db.session() as session:
        for user_id in ("alice", "bob"):
            user_store.insert(session, user_id, user_id, "x", datetime.now(UTC))
    conversation = direct_conversation_id("alice", "bob")
    services.bus.publish_many(
        [
            (DIRECT_MSG.name, conversation, envelope("alice", "bob", "first")),
            (DIRECT_MSG.name, conversation, b'{"not": "an envelope"}'),
            (DIRECT_MSG.name, conversation, envelope("alice", "bob", "third")),
        ]
    )
    consumer = DeliveryConsumer(services)
    consumer.start()
    try:
        wait_for(lambda: pending_of(services, "bob") == [1, 2], 10.0, "bob's two messages")
    finally:
        consumer.stop()  # returns once the batch being delivered is committed

    assert pending_of(services, "bob") == [1, 2]
    # Committed: nothing comes back to a new member of the group.
    group = settings.kafka_consumer_group
    assert services.bus.subscribe([DIRECT_MSG.name], group).poll_batch(10, 0.05) == []
    services.close()


def test_backend_failures_are_transient_data_failures_are_not() -> None:
    from sqlalchemy.exc import DataError, OperationalError

    from imchat.backends.base import BackendUnavailable

    assert transient(BackendUnavailable("redis"))
    assert transient(OperationalError("SELECT 1", {}, Exception("gone away")))
    assert not transient(DataError("INSERT", {}, Exception("bad string")))
    assert not transient(KeyError("cid"))
    assert not transient(UnicodeEncodeError("utf-8", "\ud800", 0, 1, "surrogates not allowed"))
