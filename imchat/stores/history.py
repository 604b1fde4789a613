"""messages: every accepted message, once per conversation, keyed by (conversation, seq)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Table, and_, or_, select, tuple_
from sqlalchemy.orm import Session

from imchat.stores.models import ConversationMember, Message
from imchat.stores.sql import insert_ignore
from imchat.stores.stats import delete_batch

MESSAGES: Table = Message.__table__  # type: ignore[assignment]
HistoryRow = dict[str, Any]


@dataclass(frozen=True)
class MessageRecord:
    conversation_id: str
    seq: int
    msg_id: str
    sender_id: str
    recipient_id: str | None
    group_id: str | None
    body: str | None
    ts: int
    reply_to: int | None
    edited_at: int | None
    deleted: bool


@dataclass(frozen=True)
class SentMessage:
    """What an earlier send of one client id was acked with."""

    msg_id: str
    seq: int
    ts: int


def record_of(row: Message) -> MessageRecord:
    return MessageRecord(
        row.conversation_id,
        row.seq,
        row.msg_id,
        row.sender_id,
        row.recipient_id,
        row.group_id,
        row.body,
        row.ts,
        row.reply_to,
        row.edited_at,
        bool(row.deleted),
    )


def append(session: Session, rows: Sequence[HistoryRow]) -> None:
    """Store messages; one already there (same conversation and seq) is kept as is."""
    insert_ignore(session, MESSAGES, rows)


def sent_before(
    session: Session, keys: Iterable[tuple[str, str, str]]
) -> dict[tuple[str, str, str], SentMessage]:
    """The stored message of each (conversation, sender, client id) that has one (one query)."""
    wanted = sorted(set(keys))
    if not wanted:
        return {}
    key = tuple_(Message.conversation_id, Message.sender_id, Message.client_id)
    query = select(
        Message.conversation_id,
        Message.sender_id,
        Message.client_id,
        Message.msg_id,
        Message.seq,
        Message.ts,
    ).where(key.in_(wanted))
    return {
        (c, s, k): SentMessage(m, int(q), int(t)) for c, s, k, m, q, t in session.execute(query)
    }


def at(session: Session, conversation_id: str, seq: int) -> MessageRecord | None:
    row = session.get(Message, (conversation_id, seq))
    return record_of(row) if row is not None else None


def exists_at(session: Session, conversation_id: str, seq: int) -> bool:
    query = select(Message.seq).where(
        Message.conversation_id == conversation_id, Message.seq == seq
    )
    return session.execute(query).first() is not None


def page(
    session: Session,
    conversation_id: str,
    *,
    floor: int,
    ceiling: int | None,
    before_seq: int | None = None,
    after_seq: int | None = None,
    limit: int = 50,
) -> tuple[list[MessageRecord], bool]:
    """Up to ``limit`` messages of the window (``floor``, ``ceiling``], ascending,
    and whether more lie beyond the page in the direction read."""
    conditions = [Message.conversation_id == conversation_id, Message.seq > floor]
    if ceiling is not None:
        conditions.append(Message.seq <= ceiling)
    if after_seq is not None:
        conditions.append(Message.seq > after_seq)
        order = Message.seq.asc()
    else:
        if before_seq is not None:
            conditions.append(Message.seq < before_seq)
        order = Message.seq.desc()
    rows = list(
        session.scalars(select(Message).where(*conditions).order_by(order).limit(limit + 1))
    )
    more = len(rows) > limit
    found = sorted((record_of(r) for r in rows[:limit]), key=lambda m: m.seq)
    return found, more


def latest(session: Session, keys: Iterable[tuple[str, int]]) -> dict[str, MessageRecord]:
    """The message at each (conversation, seq), by conversation (one query)."""
    wanted = sorted(set(keys))
    if not wanted:
        return {}
    query = select(Message).where(tuple_(Message.conversation_id, Message.seq).in_(wanted))
    return {r.conversation_id: record_of(r) for r in session.scalars(query)}


def pending_for(session: Session, user_id: str, limit: int) -> list[MessageRecord]:
    """The others' messages above the user's delivered marks, in the seqs that are
    theirs, by conversation and seq: what is pushed when they connect."""
    member = ConversationMember
    query = (
        select(Message)
        .join(
            member,
            and_(
                member.conversation_id == Message.conversation_id,
                member.user_id == user_id,
                Message.seq > member.delivered_seq,
                Message.seq > member.joined_seq,
                or_(member.left_seq.is_(None), Message.seq <= member.left_seq),
            ),
        )
        .where(Message.sender_id != user_id, Message.deleted.is_(False))
        .order_by(Message.conversation_id, Message.seq)
        .limit(limit)
    )
    return [record_of(r) for r in session.scalars(query)]


def delete_before(session: Session, cutoff_ms: int, batch: int) -> int:
    """Delete up to ``batch`` messages older than ``cutoff_ms`` (by the index on ts)."""
    return delete_batch(session, MESSAGES, MESSAGES.c.ts < cutoff_ms, batch)
