"""The relational schema (MySQL in production, SQLite embedded).

Alembic revisions in ``migrations/versions`` create exactly these tables;
``make im-db-diff`` fails when the two disagree.
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
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
    created_at: Mapped[datetime] = mapped_column(DateTime, server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(
        DateTime, server_default=func.now(), onupdate=func.now()
    )


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


class OfflineMessage(Base):
    """A pending message: kept for its recipient until they confirm delivery.

    The primary key (user_id, msg_id) makes storing a message twice for one
    recipient a no-op, so fan-out tasks can be retried safely. On MySQL the
    table is split into 16 partitions by user_id (the seed's layout), which
    requires user_id in every unique key: hence no foreign keys here.
    """

    __tablename__ = "offline_messages"
    __table_args__ = (
        Index("ix_offline_messages_user_conv_seq", "user_id", "conversation_id", "sequence_number"),
        Index("ix_offline_messages_timestamp", "timestamp"),
        Index("ix_offline_messages_conversation_id", "conversation_id"),
        {"mysql_partition_by": "KEY(user_id)", "mysql_partitions": "16"},
    )

    user_id: Mapped[str] = mapped_column(ID, primary_key=True)
    msg_id: Mapped[str] = mapped_column(ID, primary_key=True)
    conversation_id: Mapped[str] = mapped_column(CONVERSATION_ID)
    sequence_number: Mapped[int] = mapped_column(BigInteger)
    sender_id: Mapped[str] = mapped_column(ID)
    group_id: Mapped[str | None] = mapped_column(ID)
    body: Mapped[str] = mapped_column(Text)
    # Milliseconds since the epoch, as in the wire protocol's "ts".
    timestamp: Mapped[int] = mapped_column(BigInteger)


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


__all__ = [
    "ROLES",
    "Base",
    "DeliveryMark",
    "Group",
    "GroupMember",
    "OfflineMessage",
    "SequenceSnapshot",
    "User",
]


class DeliveryMark(Base):
    """How far a user has confirmed each conversation (``delivered`` frames).

    Pending rows at or below the mark are never pushed, so a pending row
    stored after its ``delivered`` arrived (the two race) is harmless.
    """

    __tablename__ = "delivery_marks"

    user_id: Mapped[str] = mapped_column(ID, primary_key=True)
    conversation_id: Mapped[str] = mapped_column(CONVERSATION_ID, primary_key=True)
    sequence_number: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime, server_default=func.now(), onupdate=func.now()
    )


class DailyStats(Base):
    """One UTC day of traffic, for ops (``python -m imchat stats``).

    The message counts are atomic increments made by the bus consumer as it
    delivers (``imchat.services.stats``): messages are not kept
    once delivered, so they can only be counted on the way through.
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
