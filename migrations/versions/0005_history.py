"""History stored once per conversation; pending messages derived from marks.

Revision ID: 0005_history
Revises: 0004_daily_stats
Create Date: 2026-12-01

``messages`` keeps every accepted message once, keyed by (conversation, seq)
and split in 16 partitions by conversation on MySQL/MariaDB, so that a page
of history is one index range. ``conversations`` holds each conversation's
last seq and activity; ``conversation_members`` each user's marks in it
(delivered, read, and for groups the seq at which they joined and left).

``offline_messages`` (one row per recipient) and ``delivery_marks`` are
retired: a user's pending messages are those above their delivered mark.
Their rows move over on upgrade, and come back on downgrade. A group member
held no row for the messages sent before they joined: their window starts
after those (``joined_seq``), so the upgrade leaves everyone exactly the
messages that were pending for them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005_history"
down_revision: str | Sequence[str] | None = "0004_daily_stats"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.String(36)
CONVERSATION_ID = sa.String(80)
CHUNK = 1000


def upgrade() -> None:
    _create_messages()
    _create_conversations()
    _create_conversation_members()
    bind = op.get_bind()
    senders, held = _history_from_pending(bind)
    _members_from_marks_and_groups(bind, senders, held)
    op.drop_table("offline_messages")
    op.drop_table("delivery_marks")


def downgrade() -> None:
    _create_offline_messages()
    _create_delivery_marks()
    bind = op.get_bind()
    _pending_from_history(bind)
    op.drop_table("conversation_members")
    op.drop_table("conversations")
    op.drop_table("messages")


# ------------------------------------------------------------------ tables
def _create_messages() -> None:
    op.create_table(
        "messages",
        sa.Column("conversation_id", CONVERSATION_ID, nullable=False),
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("msg_id", ID, nullable=False),
        sa.Column("sender_id", ID, nullable=False),
        sa.Column("client_id", sa.String(64), nullable=False),
        sa.Column("recipient_id", ID, nullable=True),
        sa.Column("group_id", ID, nullable=True),
        sa.Column("body", sa.Text(), nullable=True),
        sa.Column("ts", sa.BigInteger(), nullable=False),
        sa.Column("reply_to", sa.BigInteger(), nullable=True),
        sa.Column("edited_at", sa.BigInteger(), nullable=True),
        sa.Column("deleted", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.PrimaryKeyConstraint("conversation_id", "seq", name=op.f("pk_messages")),
        sa.UniqueConstraint(
            "conversation_id",
            "sender_id",
            "client_id",
            name=op.f("uq_messages_conversation_id_sender_id_client_id"),
        ),
        # Ignored by every database but MySQL/MariaDB.
        mysql_partition_by="KEY(conversation_id)",
        mysql_partitions="16",
    )
    op.create_index(op.f("ix_messages_ts"), "messages", ["ts"])


def _create_conversations() -> None:
    op.create_table(
        "conversations",
        sa.Column("conversation_id", CONVERSATION_ID, nullable=False),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("group_id", ID, nullable=True),
        sa.Column("last_seq", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("last_ts", sa.BigInteger(), server_default="0", nullable=False),
        sa.PrimaryKeyConstraint("conversation_id", name=op.f("pk_conversations")),
    )


def _create_conversation_members() -> None:
    op.create_table(
        "conversation_members",
        sa.Column("user_id", ID, nullable=False),
        sa.Column("conversation_id", CONVERSATION_ID, nullable=False),
        sa.Column("peer_id", ID, nullable=True),
        sa.Column("joined_seq", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("left_seq", sa.BigInteger(), nullable=True),
        sa.Column("delivered_seq", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("read_seq", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("joined_ts", sa.BigInteger(), server_default="0", nullable=False),
        sa.PrimaryKeyConstraint("user_id", "conversation_id", name=op.f("pk_conversation_members")),
    )
    op.create_index(
        op.f("ix_conversation_members_conversation_id"),
        "conversation_members",
        ["conversation_id"],
    )


def _create_offline_messages() -> None:
    """As revision 0001 made it."""
    op.create_table(
        "offline_messages",
        sa.Column("user_id", ID, nullable=False),
        sa.Column("msg_id", ID, nullable=False),
        sa.Column("conversation_id", CONVERSATION_ID, nullable=False),
        sa.Column("sequence_number", sa.BigInteger(), nullable=False),
        sa.Column("sender_id", ID, nullable=False),
        sa.Column("group_id", ID, nullable=True),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("timestamp", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("user_id", "msg_id", name=op.f("pk_offline_messages")),
        mysql_partition_by="KEY(user_id)",
        mysql_partitions="16",
    )
    op.create_index(
        op.f("ix_offline_messages_user_conv_seq"),
        "offline_messages",
        ["user_id", "conversation_id", "sequence_number"],
    )
    op.create_index(op.f("ix_offline_messages_timestamp"), "offline_messages", ["timestamp"])
    op.create_index(
        op.f("ix_offline_messages_conversation_id"), "offline_messages", ["conversation_id"]
    )


def _create_delivery_marks() -> None:
    """As revision 0003 made it."""
    op.create_table(
        "delivery_marks",
        sa.Column("user_id", sa.String(36), nullable=False),
        sa.Column("conversation_id", sa.String(80), nullable=False),
        sa.Column("sequence_number", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), server_default=sa.func.now(), nullable=False),
        sa.PrimaryKeyConstraint("user_id", "conversation_id", name=op.f("pk_delivery_marks")),
    )


# ------------------------------------------------------------- data moves
def _table(name: str, *columns: str) -> sa.TableClause:
    return sa.table(name, *(sa.column(c) for c in columns))


MESSAGES = _table(
    "messages",
    "conversation_id",
    "seq",
    "msg_id",
    "sender_id",
    "client_id",
    "recipient_id",
    "group_id",
    "body",
    "ts",
)
CONVERSATIONS = _table(
    "conversations", "conversation_id", "kind", "group_id", "last_seq", "last_ts"
)
MEMBERS = _table(
    "conversation_members",
    "user_id",
    "conversation_id",
    "peer_id",
    "delivered_seq",
    "joined_seq",
    "left_seq",
    "joined_ts",
)
OFFLINE = _table(
    "offline_messages",
    "user_id",
    "msg_id",
    "conversation_id",
    "sequence_number",
    "sender_id",
    "group_id",
    "body",
    "timestamp",
)
MARKS = _table("delivery_marks", "user_id", "conversation_id", "sequence_number")


def _insert(bind: sa.engine.Connection, table: sa.TableClause, rows: list[dict]) -> None:
    for start in range(0, len(rows), CHUNK):
        bind.execute(table.insert(), rows[start : start + CHUNK])


# (user, conversation) -> the seqs pending for that user there (one row each).
Held = dict[tuple[str, str], set[int]]
# conversation -> (seq, sender) of each message moved to history.
Senders = dict[str, list[tuple[int, str]]]


def _history_from_pending(bind: sa.engine.Connection) -> tuple[Senders, Held]:
    """Each pending message once in history (a group message had one row per
    recipient), and its conversation with its last seq and activity. Returns
    who held which rows: the members' windows are derived from them."""
    messages: dict[tuple[str, int], dict] = {}
    held: Held = {}
    for row in bind.execute(sa.select(OFFLINE)).mappings():
        key = (row["conversation_id"], int(row["sequence_number"]))
        held.setdefault((row["user_id"], key[0]), set()).add(key[1])
        messages.setdefault(key, _history_row(row))
    _insert(bind, MESSAGES, list(messages.values()))
    conversations: dict[str, dict] = {}
    senders: Senders = {}
    for (conversation_id, seq), message in messages.items():
        senders.setdefault(conversation_id, []).append((seq, message["sender_id"]))
        found = conversations.setdefault(
            conversation_id,
            {
                "conversation_id": conversation_id,
                "kind": "group" if message["group_id"] else "direct",
                "group_id": message["group_id"],
                "last_seq": 0,
                "last_ts": 0,
            },
        )
        found["last_seq"] = max(found["last_seq"], seq)
        found["last_ts"] = max(found["last_ts"], message["ts"])
    _insert(bind, CONVERSATIONS, list(conversations.values()))
    return senders, held


def _history_row(row: sa.RowMapping) -> dict:
    # An empty group id is a direct message as well as a NULL one.
    group_id = row["group_id"] or None
    return {
        "conversation_id": row["conversation_id"],
        "seq": int(row["sequence_number"]),
        "msg_id": row["msg_id"],
        "sender_id": row["sender_id"],
        # The sender's client id is not kept in a pending row: the
        # msg_id stands in (unique, so no resend can collide with it).
        "client_id": row["msg_id"],
        "recipient_id": None if group_id else row["user_id"],
        "group_id": group_id,
        "body": row["body"],
        "ts": int(row["timestamp"]),
    }


GROUPS = _table("groups", "group_id", "created_at")
GROUP_MEMBERS = _table("group_members", "group_id", "user_id", "joined_at")


def _members_from_marks_and_groups(
    bind: sa.engine.Connection, senders: Senders, held: Held
) -> None:
    """A member row for both users of each direct conversation in history, for
    every group member, and for a former member who still had rows pending,
    delivered up to their old mark."""
    marks = {
        (r["user_id"], r["conversation_id"]): int(r["sequence_number"])
        for r in bind.execute(sa.select(MARKS)).mappings()
    }
    members: dict[tuple[str, str], dict] = {}

    def add(user_id: str, conversation_id: str, peer_id: str | None, joined_ts: int) -> None:
        members.setdefault(
            (user_id, conversation_id),
            {
                "user_id": user_id,
                "conversation_id": conversation_id,
                "peer_id": peer_id,
                "delivered_seq": marks.get((user_id, conversation_id), 0),
                "joined_seq": 0,
                "left_seq": None,
                "joined_ts": joined_ts,
            },
        )

    direct = sa.select(MESSAGES.c.conversation_id, MESSAGES.c.sender_id, MESSAGES.c.recipient_id)
    for row in bind.execute(direct.where(MESSAGES.c.group_id.is_(None))).mappings():
        add(row["sender_id"], row["conversation_id"], row["recipient_id"], 0)
        add(row["recipient_id"], row["conversation_id"], row["sender_id"], 0)
    new_groups = _group_members(bind, set(senders), add)
    for user_id, conversation_id in held.keys() - members.keys():
        # Removed from the group after the message: it stays theirs, up to there.
        add(user_id, conversation_id, None, 0)
        members[user_id, conversation_id]["left_seq"] = max(held[user_id, conversation_id])
    for (user_id, conversation_id), member in members.items():
        member["joined_seq"] = _joined_seq(
            held.get((user_id, conversation_id), set()),
            [
                seq
                for seq, sender in senders.get(conversation_id, [])
                if sender != user_id and seq > member["delivered_seq"]
            ],
        )
    _insert(bind, CONVERSATIONS, new_groups)
    _insert(bind, MEMBERS, list(members.values()))


def _group_members(
    bind: sa.engine.Connection, known: set[str], add: Callable[[str, str, None, int], None]
) -> list[dict]:
    """Adds every group member; returns the conversations of the groups
    without a message in history, their activity the group's creation."""
    query = sa.select(
        GROUP_MEMBERS.c.group_id,
        GROUP_MEMBERS.c.user_id,
        GROUP_MEMBERS.c.joined_at,
        GROUPS.c.created_at,
    ).join(GROUPS, GROUPS.c.group_id == GROUP_MEMBERS.c.group_id)
    new_groups: dict[str, dict] = {}
    for group_id, user_id, joined_at, created_at in bind.execute(query):
        conversation_id = f"g:{group_id}"
        add(user_id, conversation_id, None, _ms(joined_at))
        if conversation_id not in known:
            new_groups.setdefault(
                conversation_id,
                {
                    "conversation_id": conversation_id,
                    "kind": "group",
                    "group_id": group_id,
                    "last_seq": 0,
                    "last_ts": _ms(created_at),
                },
            )
    return list(new_groups.values())


def _joined_seq(mine: set[int], others: list[int]) -> int:
    """Where the user's share of a conversation begins.

    ``others`` are the others' messages above the user's mark: each was
    pending for them unless they joined the group after it was sent (a
    pending row was only ever written for the members of the moment). The
    newest of those before their first pending one is where they joined.
    """
    first = min(mine, default=None)
    missed = [seq for seq in others if seq not in mine and (first is None or seq < first)]
    return max(missed, default=0)


def _ms(value: object) -> int:
    """Milliseconds since the epoch of a DATETIME column (naive UTC, or text on SQLite)."""
    from datetime import UTC, datetime

    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if isinstance(value, datetime):
        return int(value.replace(tzinfo=value.tzinfo or UTC).timestamp() * 1000)
    return 0


def _pending_from_history(bind: sa.engine.Connection) -> None:
    """Back to one pending row per recipient: the others' messages above each
    member's delivered mark (within the seqs that are theirs), and the marks."""
    query = sa.text(
        "SELECT cm.user_id, cm.delivered_seq, m.conversation_id, m.seq, m.msg_id,"
        " m.sender_id, m.group_id, m.body, m.ts"
        " FROM conversation_members cm JOIN messages m"
        " ON m.conversation_id = cm.conversation_id AND m.seq > cm.delivered_seq"
        " AND m.seq > cm.joined_seq AND (cm.left_seq IS NULL OR m.seq <= cm.left_seq)"
        " WHERE m.sender_id <> cm.user_id AND m.deleted = :no AND m.body IS NOT NULL"
    )
    rows = [
        {
            "user_id": r["user_id"],
            "msg_id": r["msg_id"],
            "conversation_id": r["conversation_id"],
            "sequence_number": r["seq"],
            "sender_id": r["sender_id"],
            "group_id": r["group_id"],
            "body": r["body"],
            "timestamp": r["ts"],
        }
        for r in bind.execute(query, {"no": False}).mappings()
    ]
    _insert(bind, OFFLINE, rows)
    marks = sa.text(
        "SELECT user_id, conversation_id, delivered_seq FROM conversation_members"
        " WHERE delivered_seq > 0"
    )
    _insert(
        bind,
        MARKS,
        [
            {"user_id": u, "conversation_id": c, "sequence_number": s}
            for u, c, s in bind.execute(marks)
        ],
    )
