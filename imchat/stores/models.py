"""The relational schema (MySQL in production, SQLite embedded).

Alembic revisions in ``migrations/versions`` create exactly these tables;
``make im-db-diff`` fails when the two disagree.
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    false,
    func,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

ID = String(36)
CONVERSATION_ID = String(80)
ROLES = ("owner", "admin", "member")

# Named constraints so that migrations and downgrades are deterministic on every database.
NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class User(Base):
    __tablename__ = "users"

    user_id: Mapped[str] = mapped_column(ID, primary_key=True)
    username: Mapped[str] = mapped_column(String(32), unique=True)
    email: Mapped[str | None] = mapped_column(String(255))
    display_name: Mapped[str | None] = mapped_column(String(64))
    avatar_url: Mapped[str | None] = mapped_column(String(512))
    password_hash: Mapped[str] = mapped_column(String(255))
    # When the user's last connection closed (ms), set as presence turns offline.
    last_seen_ms: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(DateTime, server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(
        DateTime, server_default=func.now(), onupdate=func.now()
    )


class AuthSession(Base):
    """One login: its refresh token (only a hash of it) and whether it ended.

    Access tokens name their session (``sid``): a token of an ended session
    is refused everywhere, and the session's sockets are closed.
    """

    __tablename__ = "sessions"
    __table_args__ = (Index("ix_sessions_user_id", "user_id"),)

    session_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    user_id: Mapped[str] = mapped_column(ID, ForeignKey("users.user_id", ondelete="CASCADE"))
    # sha256 of the one refresh token that works now; each refresh replaces it.
    refresh_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime)
    refreshed_at: Mapped[datetime] = mapped_column(DateTime)
    expires_at: Mapped[datetime] = mapped_column(DateTime)
    ended_at: Mapped[datetime | None] = mapped_column(DateTime)


class OutboxEvent(Base):
    """A bus record written in the transaction of the change it announces
    (the transactional outbox): published after the commit and then deleted,
    so that a crash between the commit and the publish loses nothing."""

    __tablename__ = "event_outbox"
    __table_args__ = (Index("ix_event_outbox_created_ms", "created_ms"),)

    event_id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    topic: Mapped[str] = mapped_column(String(64))
    key: Mapped[str] = mapped_column(String(80))
    value: Mapped[str] = mapped_column(Text)
    created_ms: Mapped[int] = mapped_column(BigInteger)


class Group(Base):
    __tablename__ = "groups"

    group_id: Mapped[str] = mapped_column(ID, primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    creator_id: Mapped[str] = mapped_column(ID, ForeignKey("users.user_id"))
    owner_id: Mapped[str] = mapped_column(ID, ForeignKey("users.user_id"))
    member_count: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime, server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(
        DateTime, server_default=func.now(), onupdate=func.now()
    )


class GroupMember(Base):
    __tablename__ = "group_members"
    __table_args__ = (
        CheckConstraint("role IN ('owner', 'admin', 'member')", name="role"),
        Index("ix_group_members_user_id", "user_id"),
    )

    group_id: Mapped[str] = mapped_column(
        ID, ForeignKey("groups.group_id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[str] = mapped_column(ID, ForeignKey("users.user_id"), primary_key=True)
    role: Mapped[str] = mapped_column(String(16), default="member")
    joined_at: Mapped[datetime] = mapped_column(DateTime, server_default=func.now())


class Message(Base):
    """A message in its conversation's history: stored once, however many recipients.

    The primary key (conversation, seq) makes a page of history one index
    range; on MySQL the table is split into 16 partitions by conversation,
    which requires the conversation in every unique key. The sender's client
    id is unique per conversation, so a resend after the loss of Redis finds
    the first message instead of becoming a second one.
    """

    __tablename__ = "messages"
    __table_args__ = (
        UniqueConstraint("conversation_id", "sender_id", "client_id"),
        Index("ix_messages_ts", "ts"),
        {"mysql_partition_by": "KEY(conversation_id)", "mysql_partitions": "16"},
    )

    conversation_id: Mapped[str] = mapped_column(CONVERSATION_ID, primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    msg_id: Mapped[str] = mapped_column(ID)
    sender_id: Mapped[str] = mapped_column(ID)
    client_id: Mapped[str] = mapped_column(String(64))
    # The recipient of a direct message, or the group of a group message.
    recipient_id: Mapped[str | None] = mapped_column(ID)
    group_id: Mapped[str | None] = mapped_column(ID)
    # None once the message is deleted: its text is gone from storage.
    body: Mapped[str | None] = mapped_column(Text)
    # Milliseconds since the epoch, as the wire protocol's "ts".
    ts: Mapped[int] = mapped_column(BigInteger)
    reply_to: Mapped[int | None] = mapped_column(BigInteger)
    edited_at: Mapped[int | None] = mapped_column(BigInteger)
    deleted: Mapped[bool] = mapped_column(Boolean, server_default=false())


class Conversation(Base):
    """A conversation's last seq and last activity (ms): one row updated per batch."""

    __tablename__ = "conversations"

    conversation_id: Mapped[str] = mapped_column(CONVERSATION_ID, primary_key=True)
    kind: Mapped[str] = mapped_column(String(8))
    group_id: Mapped[str | None] = mapped_column(ID)
    last_seq: Mapped[int] = mapped_column(BigInteger, server_default="0")
    last_ts: Mapped[int] = mapped_column(BigInteger, server_default="0")


class ConversationMember(Base):
    """One user's place in one conversation: their marks, and for a group the
    seqs between which its messages are theirs (after ``joined_seq``, up to
    ``left_seq`` once they left). Marks never move back.

    A user's pending messages are the others' messages above
    ``delivered_seq``: nothing is stored per recipient.
    """

    __tablename__ = "conversation_members"
    __table_args__ = (Index("ix_conversation_members_conversation_id", "conversation_id"),)

    user_id: Mapped[str] = mapped_column(ID, primary_key=True)
    conversation_id: Mapped[str] = mapped_column(CONVERSATION_ID, primary_key=True)
    # The other user of a direct conversation.
    peer_id: Mapped[str | None] = mapped_column(ID)
    joined_seq: Mapped[int] = mapped_column(BigInteger, server_default="0")
    left_seq: Mapped[int | None] = mapped_column(BigInteger)
    delivered_seq: Mapped[int] = mapped_column(BigInteger, server_default="0")
    read_seq: Mapped[int] = mapped_column(BigInteger, server_default="0")
    # When the user joined (ms): a group's activity before its first message.
    joined_ts: Mapped[int] = mapped_column(BigInteger, server_default="0")
    # Web Push for this conversation: on, off, or None for the default rule
    # (on for direct ones, on for groups up to IMCHAT_PUSH_GROUP_MUTE_ABOVE members).
    push: Mapped[bool | None] = mapped_column(Boolean)


class Block(Base):
    """``user_id`` blocks ``blocked_id``: no direct messages from them, no presence
    or typing to them. Groups are shared spaces and stay as they are."""

    __tablename__ = "blocks"
    __table_args__ = (Index("ix_blocks_blocked_id", "blocked_id"),)

    user_id: Mapped[str] = mapped_column(ID, primary_key=True)
    blocked_id: Mapped[str] = mapped_column(ID, primary_key=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, server_default=func.now())


class PushSubscription(Base):
    """A browser's Web Push subscription (its PushSubscription JSON), keyed by
    the sha256 of its endpoint: an endpoint is one browser profile's, and is
    too long for a MySQL key. Removed when the push service answers 404 or 410."""

    __tablename__ = "push_subscriptions"
    __table_args__ = (Index("ix_push_subscriptions_user_id", "user_id"),)

    endpoint_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[str] = mapped_column(ID)
    endpoint: Mapped[str] = mapped_column(Text)
    # The browser's P-256 public key and auth secret, base64url (RFC 8291).
    p256dh: Mapped[str] = mapped_column(String(128))
    auth: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime, server_default=func.now())


class MessageChange(Base):
    """One accepted edit, delete or reaction, by its author's client id: a resend
    of the same id finds it and is acked the same, changing nothing."""

    __tablename__ = "message_changes"

    user_id: Mapped[str] = mapped_column(ID, primary_key=True)
    client_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    conversation_id: Mapped[str] = mapped_column(CONVERSATION_ID)
    seq: Mapped[int] = mapped_column(BigInteger)
    msg_id: Mapped[str] = mapped_column(ID)
    # Milliseconds since the epoch: the ``ts`` of the change's ack.
    ts: Mapped[int] = mapped_column(BigInteger)


class MessageReaction(Base):
    """``user_id`` reacted to message (conversation, seq) with ``emoji``; split
    like ``messages`` so that a page's reactions are read from one partition."""

    __tablename__ = "message_reactions"
    __table_args__ = ({"mysql_partition_by": "KEY(conversation_id)", "mysql_partitions": "16"},)

    conversation_id: Mapped[str] = mapped_column(CONVERSATION_ID, primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    emoji: Mapped[str] = mapped_column(String(16), primary_key=True)
    user_id: Mapped[str] = mapped_column(ID, primary_key=True)


class SequenceSnapshot(Base):
    """The durable ceiling of a conversation's seq.

    Every seq handed out is at most ``sequence_number``; when Redis loses a
    counter it restarts above it. Raised a block (10,000) at a time.
    """

    __tablename__ = "sequence_snapshots"

    conversation_id: Mapped[str] = mapped_column(CONVERSATION_ID, primary_key=True)
    sequence_number: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime, server_default=func.now(), onupdate=func.now()
    )


class DailyStats(Base):
    """One UTC day of traffic, for ops (``python -m imchat stats``).

    The message counts are atomic increments made by the bus consumer as it
    delivers (``imchat.services.stats``), in the transaction of each batch:
    counting them afterwards would mean scanning the history.
    ``active_users`` is rolled up from ``active_users_daily`` by a beat job.
    """

    __tablename__ = "daily_stats"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    direct_messages: Mapped[int] = mapped_column(BigInteger, server_default="0")
    group_messages: Mapped[int] = mapped_column(BigInteger, server_default="0")
    active_users: Mapped[int] = mapped_column(Integer, server_default="0")
    updated_at: Mapped[datetime] = mapped_column(
        DateTime, server_default=func.now(), onupdate=func.now()
    )


class ActiveUserDay(Base):
    """A user who sent at least one message on a UTC day (insert-or-ignore).

    Kept a few weeks only: the beat job counts each day into ``daily_stats``
    and purges the rows past ``maintenance.ACTIVE_USERS_KEEP_DAYS``.
    """

    __tablename__ = "active_users_daily"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    user_id: Mapped[str] = mapped_column(ID, primary_key=True)
