"""Pending (offline) messages and delivery marks: the SQL of the delivery path."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Table, and_, delete, or_, select, update
from sqlalchemy.orm import Session

from imchat.stores.models import DeliveryMark, OfflineMessage
from imchat.stores.sql import insert_ignore

PENDING: Table = OfflineMessage.__table__  # type: ignore[assignment]
MARKS: Table = DeliveryMark.__table__  # type: ignore[assignment]


def store(session: Session, rows: Sequence[dict[str, Any]]) -> None:
    """Insert pending rows; a row already there (same user and msg_id) is kept as is."""
    insert_ignore(session, PENDING, rows)


def for_user(session: Session, user_id: str, limit: int) -> list[OfflineMessage]:
    """The user's pending messages above their delivery marks, by conversation and seq."""
    mark = DeliveryMark
    query = (
        select(OfflineMessage)
        .outerjoin(
            mark,
            and_(
                mark.user_id == OfflineMessage.user_id,
                mark.conversation_id == OfflineMessage.conversation_id,
            ),
        )
        .where(
            OfflineMessage.user_id == user_id,
            or_(
                mark.sequence_number.is_(None),
                OfflineMessage.sequence_number > mark.sequence_number,
            ),
        )
        .order_by(OfflineMessage.conversation_id, OfflineMessage.sequence_number)
        .limit(limit)
    )
    return list(session.scalars(query))


def confirm(session: Session, user_id: str, conversation_id: str, seq: int) -> None:
    """Record that ``user_id`` has everything of the conversation up to ``seq``; drop those rows."""
    raised = session.execute(
        update(DeliveryMark)
        .where(
            DeliveryMark.user_id == user_id,
            DeliveryMark.conversation_id == conversation_id,
            DeliveryMark.sequence_number < seq,
        )
        .values(sequence_number=seq)
    )
    if raised.rowcount == 0:  # type: ignore[attr-defined]
        insert_ignore(
            session,
            MARKS,
            [{"user_id": user_id, "conversation_id": conversation_id, "sequence_number": seq}],
        )
    session.execute(
        delete(OfflineMessage).where(
            OfflineMessage.user_id == user_id,
            OfflineMessage.conversation_id == conversation_id,
            OfflineMessage.sequence_number <= seq,
        )
    )
