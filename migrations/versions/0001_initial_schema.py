"""The initial schema: users, groups, group_members, offline_messages, sequence_snapshots.

Written by hand to match imchat/stores/models.py exactly, constraint and index names
included (the models' naming convention; ``op.f`` keeps a name as written).
On MySQL ``offline_messages`` is split into 16 partitions by ``user_id``, the
seed's layout; its primary key therefore starts with ``user_id`` and it has
no foreign keys (MySQL refuses both on partitioned tables otherwise).

Revision ID: 0001_initial_schema
Revises:
Create Date: 2025-11-28
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0001_initial_schema"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copies of the models' column types: a revision never imports the models,
# which keep changing after it is written.
ID = sa.String(36)
CONVERSATION_ID = sa.String(80)


def _timestamp(name: str) -> sa.Column[datetime]:
    return sa.Column(name, sa.DateTime(), server_default=sa.func.now(), nullable=False)


def upgrade() -> None:
    _create_users()
    _create_groups()
    _create_group_members()
    _create_offline_messages()
    _create_sequence_snapshots()


def downgrade() -> None:
    op.drop_table("sequence_snapshots")
    op.drop_table("offline_messages")
    op.drop_table("group_members")
    op.drop_table("groups")
    op.drop_table("users")


def _create_users() -> None:
    op.create_table(
        "users",
        sa.Column("user_id", ID, nullable=False),
        sa.Column("username", sa.String(32), nullable=False),
        sa.Column("email", sa.String(255), nullable=True),
        sa.Column("display_name", sa.String(64), nullable=True),
        sa.Column("avatar_url", sa.String(512), nullable=True),
        sa.Column("password_hash", sa.String(255), nullable=False),
        _timestamp("created_at"),
        _timestamp("updated_at"),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_users")),
        sa.UniqueConstraint("username", name=op.f("uq_users_username")),
    )


def _create_groups() -> None:
    op.create_table(
        "groups",
        sa.Column("group_id", ID, nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("creator_id", ID, nullable=False),
        sa.Column("owner_id", ID, nullable=False),
        sa.Column("member_count", sa.Integer(), nullable=False),
        _timestamp("created_at"),
        _timestamp("updated_at"),
        sa.PrimaryKeyConstraint("group_id", name=op.f("pk_groups")),
        sa.ForeignKeyConstraint(
            ["creator_id"], ["users.user_id"], name=op.f("fk_groups_creator_id_users")
        ),
        sa.ForeignKeyConstraint(
            ["owner_id"], ["users.user_id"], name=op.f("fk_groups_owner_id_users")
        ),
    )


def _create_group_members() -> None:
    op.create_table(
        "group_members",
        sa.Column("group_id", ID, nullable=False),
        sa.Column("user_id", ID, nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        _timestamp("joined_at"),
        sa.PrimaryKeyConstraint("group_id", "user_id", name=op.f("pk_group_members")),
        sa.CheckConstraint(
            "role IN ('owner', 'admin', 'member')", name=op.f("ck_group_members_role")
        ),
        sa.ForeignKeyConstraint(
            ["group_id"],
            ["groups.group_id"],
            name=op.f("fk_group_members_group_id_groups"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.user_id"], name=op.f("fk_group_members_user_id_users")
        ),
    )
    op.create_index(op.f("ix_group_members_user_id"), "group_members", ["user_id"])


def _create_offline_messages() -> None:
    op.create_table(
        "offline_messages",
        sa.Column("user_id", ID, nullable=False),
        sa.Column("msg_id", ID, nullable=False),
        sa.Column("conversation_id", CONVERSATION_ID, nullable=False),
        sa.Column("sequence_number", sa.BigInteger(), nullable=False),
        sa.Column("sender_id", ID, nullable=False),
        sa.Column("group_id", ID, nullable=True),
        sa.Column("body", sa.Text(), nullable=False),
        # Milliseconds since the epoch, as the wire protocol's "ts".
        sa.Column("timestamp", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("user_id", "msg_id", name=op.f("pk_offline_messages")),
        # Ignored by every database but MySQL/MariaDB.
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


def _create_sequence_snapshots() -> None:
    op.create_table(
        "sequence_snapshots",
        sa.Column("conversation_id", CONVERSATION_ID, nullable=False),
        sa.Column("sequence_number", sa.BigInteger(), nullable=False),
        _timestamp("updated_at"),
        sa.PrimaryKeyConstraint("conversation_id", name=op.f("pk_sequence_snapshots")),
    )
