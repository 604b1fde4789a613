"""Pending messages: stored for each recipient until they confirm delivery."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from imchat import metrics
from imchat.backends.base import SeqAssignment
from imchat.services.jobs import job
from imchat.stores import pending as pending_store
from imchat.wire.bus import MessageEnvelope
from imchat.wire.frames import MsgFrame

if TYPE_CHECKING:
    from imchat.container import Services

CONFIRM_DELIVERED = "imchat.confirm_delivered"
# Rows per transaction: keeps one INSERT bounded for large groups.
CHUNK = 1000
# A row of offline_messages, as its columns.
PendingRow = dict[str, Any]


def pending_rows(
    envelope: MessageEnvelope, assigned: SeqAssignment, recipients: list[str]
) -> list[PendingRow]:
    """One row per recipient of an accepted message."""
    return [
        {
            "user_id": user_id,
            "msg_id": assigned.msg_id,
            "conversation_id": envelope.conversation_id,
            "sequence_number": assigned.seq,
            "sender_id": envelope.sender,
            "group_id": envelope.group,
            "body": envelope.body,
            "timestamp": assigned.ts,
        }
        for user_id in recipients
    ]


def store_pending(services: Services, rows: list[PendingRow]) -> None:
    """Idempotent: a row already stored for (user, msg_id) is left alone."""
    with services.db.session() as session:
        pending_store.store(session, rows)


@job(CONFIRM_DELIVERED)
def confirm_delivered(services: Services, marks: list[list[Any]]) -> None:
    """``marks`` are [user_id, conversation_id, seq] triples from ``delivered`` frames."""
    with services.db.session() as session:
        for user_id, conversation_id, seq in marks:
            pending_store.confirm(session, str(user_id), str(conversation_id), int(seq))
    metrics.PENDING_CONFIRMED.inc(len(marks))


def load_pending(services: Services, user_id: str, limit: int = 100_000) -> list[MsgFrame]:
    """The user's pending messages as ``msg`` frames, in seq order per conversation."""
    with services.db.session() as session:
        return [
            MsgFrame(
                msg_id=r.msg_id,
                conversation_id=r.conversation_id,
                seq=r.sequence_number,
                sender=r.sender_id,
                body=r.body,
                ts=r.timestamp,
                to=None if r.group_id else r.user_id,
                group=r.group_id or None,
            )
            for r in pending_store.for_user(session, user_id, limit)
        ]
