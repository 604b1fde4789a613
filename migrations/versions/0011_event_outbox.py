"""event_outbox: bus records written with the change they announce.

Membership events used to be published after their transaction committed:
a crash in between lost them. They are now rows of the same transaction,
published and deleted after it (docs/architecture.md, "Membership events").

Revision ID: 0011_event_outbox
Revises: 0010_sessions
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011_event_outbox"
down_revision: str | Sequence[str] | None = "0010_sessions"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "event_outbox",
        sa.Column(
            "event_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("topic", sa.String(64), nullable=False),
        sa.Column("key", sa.String(80), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("event_id", name=op.f("pk_event_outbox")),
    )
    op.create_index(op.f("ix_event_outbox_created_ms"), "event_outbox", ["created_ms"])


def downgrade() -> None:
    op.drop_table("event_outbox")
