"""sequence_snapshots: the durable reservation above every seq handed out."""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from imchat.models import SequenceSnapshot


def reserved(session: Session, conversation_id: str) -> int:
    """The conversation's reservation, 0 for a conversation never seen."""
    value = session.scalar(
        select(SequenceSnapshot.sequence_number).where(
            SequenceSnapshot.conversation_id == conversation_id
        )
    )
    return int(value or 0)


def reserve(session: Session, conversation_id: str, upto: int) -> None:
    """Raise the reservation to ``upto`` (never lowers it)."""
    raised = session.execute(
        update(SequenceSnapshot)
        .where(
            SequenceSnapshot.conversation_id == conversation_id,
            SequenceSnapshot.sequence_number < upto,
        )
        .values(sequence_number=upto)
    )
    if raised.rowcount:  # type: ignore[attr-defined]
        return
    if reserved(session, conversation_id):
        return  # already at or above upto
    try:
        with session.begin_nested():
            session.add(SequenceSnapshot(conversation_id=conversation_id, sequence_number=upto))
    except IntegrityError:
        # Another consumer created it meanwhile: raise theirs instead.
        reserve(session, conversation_id, upto)
