"""push subscriptions: browsers' Web Push subscriptions, and the per-conversation switch.

``push_subscriptions`` holds each browser's PushSubscription, keyed by the
sha256 of its endpoint; ``conversation_members.push`` is a member's choice
for one conversation (null: the default rule).

Revision ID: 0009_push_subscriptions
Revises: 0008_presence
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009_push_subscriptions"
down_revision: str | Sequence[str] | None = "0008_presence"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "push_subscriptions",
        sa.Column("endpoint_hash", sa.String(64), nullable=False),
        sa.Column("user_id", sa.String(36), nullable=False),
        sa.Column("endpoint", sa.Text(), nullable=False),
        sa.Column("p256dh", sa.String(128), nullable=False),
        sa.Column("auth", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(), server_default=sa.func.now(), nullable=False),
        sa.PrimaryKeyConstraint("endpoint_hash", name=op.f("pk_push_subscriptions")),
    )
    op.create_index(op.f("ix_push_subscriptions_user_id"), "push_subscriptions", ["user_id"])
    with op.batch_alter_table("conversation_members") as batch:
        batch.add_column(sa.Column("push", sa.Boolean(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("conversation_members") as batch:
        batch.drop_column("push")
    op.drop_table("push_subscriptions")
