"""daily_stats and active_users_daily: the per-day traffic report of ops.

Revision ID: 0004_daily_stats
Revises: 0003_delivery_marks
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004_daily_stats"
down_revision: str | Sequence[str] | None = "0003_delivery_marks"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "daily_stats",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("direct_messages", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("group_messages", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("active_users", sa.Integer(), server_default="0", nullable=False),
        sa.Column("updated_at", sa.DateTime(), server_default=sa.func.now(), nullable=False),
        sa.PrimaryKeyConstraint("day", name=op.f("pk_daily_stats")),
    )
    op.create_table(
        "active_users_daily",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("user_id", sa.String(36), nullable=False),
        sa.PrimaryKeyConstraint("day", "user_id", name=op.f("pk_active_users_daily")),
    )


def downgrade() -> None:
    op.drop_table("active_users_daily")
    op.drop_table("daily_stats")
