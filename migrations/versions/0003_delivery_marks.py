"""delivery_marks: how far each user has confirmed each conversation.

Revision ID: 0003_delivery_marks
Revises: 0002_sample_data
Create Date: 2026-11-28
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003_delivery_marks"
down_revision: str | Sequence[str] | None = "0002_sample_data"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "delivery_marks",
        sa.Column("user_id", sa.String(36), nullable=False),
        sa.Column("conversation_id", sa.String(80), nullable=False),
        sa.Column("sequence_number", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), server_default=sa.func.now(), nullable=False),
        sa.PrimaryKeyConstraint("user_id", "conversation_id", name=op.f("pk_delivery_marks")),
    )


def downgrade() -> None:
    op.drop_table("delivery_marks")
