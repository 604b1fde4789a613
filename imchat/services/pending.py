"""Pending messages: a user's share of history above their delivered marks.

Nothing is stored per recipient: a message is one history row, and a
``delivered`` (or ``read``) frame raises the user's mark in its conversation.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from imchat import metrics
from imchat.services.jobs import job
from imchat.stores import conversations as conversation_store
from imchat.stores import history
from imchat.wire.frames import MsgFrame

if TYPE_CHECKING:
    from imchat.container import Services

MOVE_MARKS = "imchat.move_marks"
# The job name of release 1's gateways, kept for their tasks still queued.
CONFIRM_DELIVERED = "imchat.confirm_delivered"


def msg_frame_of(message: history.MessageRecord) -> MsgFrame:
    """A stored message as the ``msg`` frame it was pushed as."""
    return MsgFrame(
        msg_id=message.msg_id,
        conversation_id=message.conversation_id,
        seq=message.seq,
        sender=message.sender_id,
        body=message.body or "",
        ts=message.ts,
        to=message.recipient_id,
        group=message.group_id,
        reply_to=message.reply_to,
    )


@job(MOVE_MARKS)
def move_marks(services: Services, marks: list[list[Any]]) -> None:
    """``marks`` are [user_id, conversation_id, delivered, read] from ``delivered``
    and ``read`` frames, highest per user and conversation; marks never go back."""
    with services.db.session() as session:
        for user_id, conversation_id, delivered, read in marks:
            conversation_store.move_marks(
                session, str(user_id), str(conversation_id), int(delivered), int(read)
            )
    metrics.PENDING_CONFIRMED.inc(len(marks))


@job(CONFIRM_DELIVERED)
def confirm_delivered(services: Services, marks: list[list[Any]]) -> None:
    """[user_id, conversation_id, seq] triples, as gateways of release 1 send them."""
    move_marks(services, [[u, c, seq, 0] for u, c, seq in marks])


def load_pending(services: Services, user_id: str, limit: int = 100_000) -> list[MsgFrame]:
    """The user's pending messages as ``msg`` frames, in seq order per conversation."""
    with services.db.session() as session:
        return [msg_frame_of(m) for m in history.pending_for(session, user_id, limit)]
