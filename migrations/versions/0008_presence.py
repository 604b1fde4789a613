"""presence: when each user was last seen online.

Written once per offline transition (10 s after a user's last connection
closed), never on the message path; read by the conversation list.

Revision ID: 0008_presence
Revises: 0007_message_changes
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008_presence"
down_revision: str | Sequence[str] | None = "0007_message_changes"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("last_seen_ms", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.drop_column("last_seen_ms")
