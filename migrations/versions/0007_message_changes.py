"""message_changes and message_reactions: edits, deletes and reactions.

``message_changes`` records each accepted change by its author's client id
(a resend of the same id is acked the same and changes nothing);
``message_reactions`` holds one row per (message, emoji, user), split in 16
partitions by conversation on MySQL/MariaDB like ``messages``.

Revision ID: 0007_message_changes
Revises: 0006_blocks
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007_message_changes"
down_revision: str | Sequence[str] | None = "0006_blocks"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.String(36)
CONVERSATION_ID = sa.String(80)


def upgrade() -> None:
    op.create_table(
        "message_changes",
        sa.Column("user_id", ID, nullable=False),
        sa.Column("client_id", sa.String(64), nullable=False),
        sa.Column("conversation_id", CONVERSATION_ID, nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("msg_id", ID, nullable=False),
        sa.Column("ts", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("user_id", "client_id", name=op.f("pk_message_changes")),
    )
    op.create_table(
        "message_reactions",
        sa.Column("conversation_id", CONVERSATION_ID, nullable=False),
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("emoji", sa.String(16), nullable=False),
        sa.Column("user_id", ID, nullable=False),
        sa.PrimaryKeyConstraint(
            "conversation_id", "seq", "emoji", "user_id", name=op.f("pk_message_reactions")
        ),
        # Ignored by every database but MySQL/MariaDB.
        mysql_partition_by="KEY(conversation_id)",
        mysql_partitions="16",
    )


def downgrade() -> None:
    op.drop_table("message_reactions")
    op.drop_table("message_changes")
