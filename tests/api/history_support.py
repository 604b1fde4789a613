"""Helpers of the conversation and history API tests.

Messages are seeded through the real delivery path: each ``send`` builds a
``MessageEnvelope`` and runs it through ``process_records`` as one bus batch
(seq assignment, history, conversation activity, direct members), exactly
what the bus consumer does with a gateway's publish. Marks move through the
job the gateway's ``delivered`` and ``read`` frames dispatch.
"""

from __future__ import annotations

import itertools
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import event

from imchat.backends.base import BusRecord
from imchat.services import pending
from imchat.services.delivery.records import process_records
from imchat.stores import users as user_store
from imchat.wire.bus import MessageEnvelope
from imchat.wire.ids import direct_conversation_id, group_conversation_id
from imchat.wire.topics import DIRECT_MSG, GROUP_MSG

from .support import ApiClient, User

OFFSETS = itertools.count()


def now_ms() -> int:
    return int(time.time() * 1000)


def direct_id(a: User | str, b: User | str) -> str:
    return direct_conversation_id(_id(a), _id(b))


def group_id_of(group_id: str) -> str:
    return group_conversation_id(group_id)


def _id(user: User | str) -> str:
    return user if isinstance(user, str) else user.user_id


class Chat:
    """Sends and marks of an ``ApiClient``'s app, through the delivery service."""

    def __init__(self, api: ApiClient) -> None:
        self.api = api
        self.services = api.services

    def envelope(
        self,
        sender: User | str,
        body: str = "hello",
        *,
        to: User | str | None = None,
        group: str | None = None,
        ts: int | None = None,
        reply_to: int | None = None,
    ) -> MessageEnvelope:
        sender_id = _id(sender)
        recipient = _id(to) if to is not None else None
        conversation = (
            group_id_of(group) if group else direct_conversation_id(sender_id, recipient or "")
        )
        return MessageEnvelope(
            msg_id=uuid.uuid4().hex,
            cid=uuid.uuid4().hex[:16],
            sender=sender_id,
            conversation_id=conversation,
            body=body,
            ts=now_ms() if ts is None else ts,
            gateway="gw-test",
            conn="conn-test",
            to=recipient,
            group=group,
            reply_to=reply_to,
        )

    def deliver(self, *envelopes: MessageEnvelope) -> None:
        """One bus batch of the envelopes, in order."""
        records = [
            BusRecord(
                GROUP_MSG.name if e.group else DIRECT_MSG.name,
                0,
                next(OFFSETS),
                e.conversation_id,
                e.encode(),
            )
            for e in envelopes
        ]
        process_records(self.services, records)

    def send(self, sender: User | str, body: str = "hello", **kw: Any) -> MessageEnvelope:
        envelope = self.envelope(sender, body, **kw)
        self.deliver(envelope)
        return envelope

    def mark(
        self, user: User | str, conversation_id: str, delivered: int = 0, read: int = 0
    ) -> None:
        """What a ``delivered`` (read 0) or ``read`` frame makes the gateway dispatch."""
        pending.move_marks(self.services, [[_id(user), conversation_id, delivered, read]])

    def plain_users(self, count: int) -> list[str]:
        """``count`` users made by the user store (no login: peers of a direct conversation)."""
        ids = [uuid.uuid4().hex for _ in range(count)]
        with self.services.db.session() as session:
            for user_id in ids:
                user_store.insert(session, user_id, f"p_{user_id[:20]}", "x", datetime.now(UTC))
        return ids


@contextmanager
def counting_statements(api: ApiClient) -> Iterator[list[str]]:
    """The SQL statements run on the app's engine inside the block."""
    engine = api.services.db.engine
    seen: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)
