"""Edits, deletes and reactions of stored messages, and the client ids of the changes."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import ColumnElement, Table, and_, delete, distinct, select, update
from sqlalchemy.orm import Session

from imchat.stores.models import Message, MessageChange, MessageReaction
from imchat.stores.sql import insert_ignore

REACTIONS: Table = MessageReaction.__table__  # type: ignore[assignment]
CHANGES: Table = MessageChange.__table__  # type: ignore[assignment]
Reactions = dict[str, list[str]]


@dataclass(frozen=True)
class AppliedChange:
    """What an earlier change of one client id was acked with."""

    conversation_id: str
    seq: int
    msg_id: str
    ts: int


def applied(session: Session, user_id: str, client_id: str) -> AppliedChange | None:
    row = session.get(MessageChange, (user_id, client_id))
    if row is None:
        return None
    return AppliedChange(row.conversation_id, row.seq, row.msg_id, row.ts)


def record(session: Session, user_id: str, client_id: str, change: AppliedChange) -> None:
    row = {
        "user_id": user_id,
        "client_id": client_id,
        "conversation_id": change.conversation_id,
        "seq": change.seq,
        "msg_id": change.msg_id,
        "ts": change.ts,
    }
    insert_ignore(session, CHANGES, [row])


def _at(conversation_id: str, seq: int) -> ColumnElement[bool]:
    return and_(Message.conversation_id == conversation_id, Message.seq == seq)


def edit(session: Session, conversation_id: str, seq: int, body: str, ts: int) -> None:
    """A new body, unless the message is deleted meanwhile (its text stays gone)."""
    query = update(Message).where(_at(conversation_id, seq), Message.deleted.is_(False))
    session.execute(query.values(body=body, edited_at=ts))


def delete_message(session: Session, conversation_id: str, seq: int) -> None:
    """Mark the message deleted and drop its text from storage, with its reactions."""
    session.execute(
        update(Message).where(_at(conversation_id, seq)).values(deleted=True, body=None)
    )
    session.execute(
        delete(MessageReaction).where(
            MessageReaction.conversation_id == conversation_id, MessageReaction.seq == seq
        )
    )


def react(
    session: Session, conversation_id: str, seq: int, emoji: str, user_id: str, on: bool
) -> None:
    key = {"conversation_id": conversation_id, "seq": seq, "emoji": emoji, "user_id": user_id}
    if on:
        insert_ignore(session, REACTIONS, [key])
        return
    session.execute(
        delete(MessageReaction).where(
            *(getattr(MessageReaction, name) == value for name, value in key.items())
        )
    )


def emojis(session: Session, conversation_id: str, seq: int) -> set[str]:
    """The distinct emojis on one message."""
    query = select(distinct(MessageReaction.emoji)).where(
        MessageReaction.conversation_id == conversation_id, MessageReaction.seq == seq
    )
    return set(session.scalars(query))


def reactions(session: Session, conversation_id: str, seqs: Iterable[int]) -> dict[int, Reactions]:
    """``{seq: {emoji: [user_id, ...]}}`` for the messages ``seqs`` of one conversation
    (one query: a history page reads its reactions at once, not per message)."""
    wanted = sorted(set(seqs))
    if not wanted:
        return {}
    query = (
        select(MessageReaction.seq, MessageReaction.emoji, MessageReaction.user_id)
        .where(MessageReaction.conversation_id == conversation_id, MessageReaction.seq.in_(wanted))
        .order_by(MessageReaction.seq, MessageReaction.emoji, MessageReaction.user_id)
    )
    found: dict[int, Reactions] = {}
    for seq, emoji, user_id in session.execute(query):
        found.setdefault(int(seq), {}).setdefault(emoji, []).append(user_id)
    return found
