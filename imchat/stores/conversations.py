"""conversations and conversation_members: last seqs, activity, and each user's marks."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Table, and_, case, exists, func, or_, select, update
from sqlalchemy.dialects.mysql import insert as mysql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session, aliased

from imchat.stores import history
from imchat.stores.models import Block, Conversation, ConversationMember, Group, Message, User
from imchat.stores.sql import insert_ignore, is_mysql
from imchat.wire.ids import group_conversation_id

CONVERSATIONS: Table = Conversation.__table__  # type: ignore[assignment]
MEMBERS: Table = ConversationMember.__table__  # type: ignore[assignment]


@dataclass(frozen=True)
class Activity:
    """A conversation's newest message in one delivery batch."""

    kind: str
    group_id: str | None
    last_seq: int
    last_ts: int


@dataclass(frozen=True)
class Membership:
    user_id: str
    conversation_id: str
    peer_id: str | None
    joined_seq: int
    left_seq: int | None
    delivered_seq: int
    read_seq: int

    def sees(self, seq: int) -> bool:
        """Whether message ``seq`` is within this member's window."""
        return seq > self.joined_seq and (self.left_seq is None or seq <= self.left_seq)


@dataclass(frozen=True)
class ConversationView:
    """A conversation as one of its users sees it."""

    conversation_id: str
    kind: str
    peer_id: str | None
    group_id: str | None
    name: str | None
    last_seq: int
    last_ts: int
    delivered_seq: int
    read_seq: int
    unread: int
    last_message: history.MessageRecord | None
    # The other user's marks in a direct conversation (their read ticks).
    peer_delivered_seq: int | None = None
    peer_read_seq: int | None = None
    # The peer's presence facts in a direct conversation: when they were last
    # seen, and whether a block stands between them (then no presence at all).
    peer_last_seen_ms: int | None = None
    peer_shunned: bool = False


def record_activity(session: Session, activity: Mapping[str, Activity]) -> None:
    """Create the conversations seen first and raise each one's last seq (and with
    it the activity time), never lowering them: one upsert for the whole batch,
    sorted, so that concurrent consumers lock rows in one order."""
    rows = [
        {
            "conversation_id": c,
            "kind": activity[c].kind,
            "group_id": activity[c].group_id,
            "last_seq": activity[c].last_seq,
            "last_ts": activity[c].last_ts,
        }
        for c in sorted(activity)
    ]
    if not rows:
        return
    table = CONVERSATIONS
    if is_mysql(session):
        my = mysql_insert(table).values(rows)
        newer = my.inserted.last_seq > table.c.last_seq
        # In this order: MySQL assigns left to right, and last_ts reads the old last_seq.
        raise_both = [
            ("last_ts", case((newer, my.inserted.last_ts), else_=table.c.last_ts)),
            ("last_seq", func.greatest(table.c.last_seq, my.inserted.last_seq)),
        ]
        session.execute(my.on_duplicate_key_update(raise_both))
    else:
        lite = sqlite_insert(table).values(rows)
        newer = lite.excluded.last_seq > table.c.last_seq
        changes = {
            "last_ts": case((newer, lite.excluded.last_ts), else_=table.c.last_ts),
            "last_seq": func.max(table.c.last_seq, lite.excluded.last_seq),
        }
        session.execute(
            lite.on_conflict_do_update(index_elements=["conversation_id"], set_=changes)
        )


def add_direct_members(session: Session, pairs: Sequence[tuple[str, str, str]]) -> None:
    """Both users of each (conversation, sender, recipient), unless they are there."""
    rows = {}
    for conversation_id, sender_id, recipient_id in pairs:
        for user, peer in ((sender_id, recipient_id), (recipient_id, sender_id)):
            rows[(user, conversation_id)] = {
                "user_id": user,
                "conversation_id": conversation_id,
                "peer_id": peer,
            }
    insert_ignore(session, MEMBERS, [rows[k] for k in sorted(rows)])


def direct_peers(session: Session, user_id: str) -> list[str]:
    """Everyone who shares a direct conversation with ``user_id`` (one indexed read)."""
    member = ConversationMember
    query = select(member.peer_id).where(member.user_id == user_id, member.peer_id.is_not(None))
    return [peer for peer in session.scalars(query) if peer is not None and peer != user_id]


def join_group(session: Session, group_id: str, user_ids: Sequence[str], now_ms: int) -> None:
    """Members of the group's conversation from its current seq on (again, after leaving)."""
    conversation_id = group_conversation_id(group_id)
    row = {"conversation_id": conversation_id, "kind": "group", "group_id": group_id}
    insert_ignore(session, CONVERSATIONS, [{**row, "last_ts": now_ms}])
    last_seq = int(
        session.scalar(
            select(Conversation.last_seq).where(Conversation.conversation_id == conversation_id)
        )
        or 0
    )
    window = {
        "joined_seq": last_seq,
        "left_seq": None,
        "delivered_seq": last_seq,
        "read_seq": last_seq,
        "joined_ts": now_ms,
    }
    users = sorted(set(user_ids))
    insert_ignore(
        session,
        MEMBERS,
        [{"user_id": u, "conversation_id": conversation_id, **window} for u in users],
    )
    # A former member coming back: only what is said from now on is theirs.
    session.execute(
        update(ConversationMember)
        .where(
            ConversationMember.conversation_id == conversation_id,
            ConversationMember.user_id.in_(users),
            ConversationMember.left_seq.is_not(None),
        )
        .values(**window)
    )


def leave_group(session: Session, group_id: str, user_id: str) -> None:
    """The member's window closes at the group's current seq."""
    conversation_id = group_conversation_id(group_id)
    last_seq = (
        select(Conversation.last_seq)
        .where(Conversation.conversation_id == conversation_id)
        .scalar_subquery()
    )
    session.execute(
        update(ConversationMember)
        .where(
            ConversationMember.user_id == user_id,
            ConversationMember.conversation_id == conversation_id,
            ConversationMember.left_seq.is_(None),
        )
        .values(left_seq=func.coalesce(last_seq, 0))
    )


def membership(session: Session, user_id: str, conversation_id: str) -> Membership | None:
    row = session.get(ConversationMember, (user_id, conversation_id))
    if row is None:
        return None
    return Membership(
        row.user_id,
        row.conversation_id,
        row.peer_id,
        row.joined_seq,
        row.left_seq,
        row.delivered_seq,
        row.read_seq,
    )


def move_marks(
    session: Session, user_id: str, conversation_id: str, delivered: int, read: int
) -> bool:
    """Raise the user's delivered and read marks (never lower them); whether one moved.

    Reading implies delivery: the delivered mark is raised to the read one too.
    A mark never passes the conversation's last seq: one set ahead of it would
    hide the messages still to come from the user's pending ones.
    """
    last_seq = session.scalar(
        select(Conversation.last_seq).where(Conversation.conversation_id == conversation_id)
    )
    if last_seq is None:
        return False
    delivered, read = min(max(delivered, read), last_seq), min(read, last_seq)
    member = ConversationMember
    mine = and_(member.user_id == user_id, member.conversation_id == conversation_id)
    moved = 0
    for column, seq in ((member.delivered_seq, delivered), (member.read_seq, read)):
        if seq > 0:
            result = session.execute(
                update(member).where(mine, column < seq).values({column.key: seq})
            )
            moved += int(result.rowcount)  # type: ignore[attr-defined]
    return moved > 0


def for_user(
    session: Session,
    user_id: str,
    limit: int,
    before: tuple[int, str] | None = None,
    conversation_id: str | None = None,
) -> list[ConversationView]:
    """The user's conversations, most recent activity first, with each one's last
    message and unread count, in one query. Former members' groups are left out.

    The page is picked first (member rows and their conversations only), so the
    unread counts and last messages are worked out for its rows alone, not for
    every conversation the user has.
    """
    member, conv = ConversationMember, Conversation
    page = _page(session, user_id, limit, before, conversation_id)
    peer = aliased(ConversationMember)
    unread = (
        select(func.count())
        .select_from(Message)
        .where(
            Message.conversation_id == member.conversation_id,
            Message.seq > member.read_seq,
            Message.seq > member.joined_seq,
            Message.sender_id != user_id,
        )
        .correlate(member)
        .scalar_subquery()
    )
    peer_user = aliased(User)
    query = (
        select(
            member,
            conv,
            Group.name,
            Message,
            unread,
            peer.delivered_seq,
            peer.read_seq,
            peer_user.last_seen_ms,
            _shunned(member, user_id),
        )
        .join(page, page.c.conversation_id == member.conversation_id)
        .join(conv, conv.conversation_id == member.conversation_id)
        .outerjoin(
            peer,
            and_(peer.conversation_id == member.conversation_id, peer.user_id == member.peer_id),
        )
        .outerjoin(peer_user, peer_user.user_id == member.peer_id)
        .outerjoin(Group, Group.group_id == conv.group_id)
        .outerjoin(
            Message,
            and_(
                Message.conversation_id == conv.conversation_id,
                Message.seq == conv.last_seq,
                Message.seq > member.joined_seq,
            ),
        )
        .where(member.user_id == user_id)
        .order_by(page.c.active_at.desc(), conv.conversation_id.desc())
    )
    return [_view(*row) for row in session.execute(query)]


def _shunned(member: Any, user_id: str) -> Any:
    """Whether a block stands between the user and the direct peer, either way."""
    either_way = or_(
        and_(Block.user_id == user_id, Block.blocked_id == member.peer_id),
        and_(Block.user_id == member.peer_id, Block.blocked_id == user_id),
    )
    return exists().where(either_way).correlate(member)


def _page(
    session: Session,
    user_id: str,
    limit: int,
    before: tuple[int, str] | None,
    conversation_id: str | None,
) -> Any:
    """The ids and activity times of one page of the user's conversations."""
    member, conv = ConversationMember, Conversation
    activity = func.greatest if session.get_bind().dialect.name == "mysql" else func.max
    active_at = activity(conv.last_ts, member.joined_ts)
    query = (
        select(member.conversation_id, active_at.label("active_at"))
        .join(conv, conv.conversation_id == member.conversation_id)
        .where(member.user_id == user_id, member.left_seq.is_(None))
        # A direct conversation is listed from its first message on.
        .where(or_(conv.kind == "group", conv.last_seq > 0))
    )
    if conversation_id is not None:
        query = query.where(member.conversation_id == conversation_id)
    if before is not None:
        ts, last_id = before
        query = query.where(
            or_(active_at < ts, and_(active_at == ts, conv.conversation_id < last_id))
        )
    return query.order_by(active_at.desc(), conv.conversation_id.desc()).limit(limit).subquery()


def _view(
    member: ConversationMember,
    conv: Conversation,
    name: str | None,
    last: Message | None,
    unread: int,
    peer_delivered: int | None,
    peer_read: int | None,
    peer_last_seen: int | None,
    peer_shunned: bool,
) -> ConversationView:
    return ConversationView(
        conversation_id=conv.conversation_id,
        kind=conv.kind,
        peer_id=member.peer_id,
        group_id=conv.group_id,
        name=name,
        last_seq=conv.last_seq,
        last_ts=max(conv.last_ts, member.joined_ts),
        delivered_seq=member.delivered_seq,
        read_seq=member.read_seq,
        unread=int(unread or 0),
        last_message=history.record_of(last) if last is not None else None,
        peer_delivered_seq=peer_delivered,
        peer_read_seq=peer_read,
        peer_last_seen_ms=peer_last_seen,
        peer_shunned=bool(peer_shunned),
    )
