"""The bus consumer sets aside a record it can never deliver, and only that one."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import pytest

from imchat.config import Settings
from imchat.consumer import DeliveryConsumer, transient
from imchat.container import Services
from imchat.ops import migrate
from imchat.services.conversations import direct_conversation_id
from imchat.stores import pending as pending_store
from imchat.stores import users as user_store
from imchat.topics import DIRECT_MSG, TOPICS

pytestmark = pytest.mark.unit


def envelope(sender: str, to: str, cid: str) -> bytes:
    return json.dumps(
        {
            "msg_id": uuid.uuid4().hex,
            "cid": cid,
            "from": sender,
            "to": to,
            "conversation_id": direct_conversation_id(sender, to),
            "body": "hi",
            "ts": 1,
            "gateway": "gw",
            "conn": "c",
        }
    ).encode()


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
    bus_consumer = services.bus.subscribe([DIRECT_MSG.name], "test")
    consumer._poll_once(bus_consumer)

    with services.db.session() as session:
        rows = pending_store.for_user(session, "bob", 10)
        assert [r.sequence_number for r in rows] == [1, 2]
    # Committed: nothing comes back to a new member of the group.
    assert services.bus.subscribe([DIRECT_MSG.name], "test").poll_batch(10, 0.05) == []
    services.close()


def test_backend_failures_are_transient_data_failures_are_not() -> None:
    from sqlalchemy.exc import DataError, OperationalError

    from imchat.backends.base import BackendUnavailable

    assert transient(BackendUnavailable("redis"))
    assert transient(OperationalError("SELECT 1", {}, Exception("gone away")))
    assert not transient(DataError("INSERT", {}, Exception("bad string")))
    assert not transient(KeyError("cid"))
    assert not transient(UnicodeEncodeError("utf-8", "\ud800", 0, 1, "surrogates not allowed"))
