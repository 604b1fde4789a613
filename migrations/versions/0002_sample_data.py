"""Sample data, only when asked: the seed's Liquibase "test" context.

Users alice, bob and charlie, each with the password ``password123``, and the
group "test-group" owned by alice with the three as members. Applied only with
``imchat.ops.migrate.upgrade(settings, sample_data=True)`` (``python -m imchat db
upgrade --sample-data``) or ``alembic -x sample_data=true upgrade head``;
otherwise the revision is recorded and inserts nothing, so a new database starts
empty as the contract requires. The downgrade deletes exactly these rows (and
whatever else hangs off the sample group), whether or not they were inserted.

Revision ID: 0002_sample_data
Revises: 0001_initial_schema
Create Date: 2025-11-28
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import context, op
from argon2 import PasswordHasher

revision: str = "0002_sample_data"
down_revision: str | Sequence[str] | None = "0001_initial_schema"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SAMPLE_PASSWORD = "password123"
# Fixed ids, so that the downgrade can find exactly these rows again.
USERS = {
    "alice": "8a07a502bd8e451991aa95daf620b62f",
    "bob": "ea7787ade1014c58a9b6b23dca4b7082",
    "charlie": "c78f6b32076f4aeaa701419e4198c7c5",
}
GROUP_ID = "4d21ad5cac714274930952cc3dfd23ac"
GROUP_NAME = "test-group"
OWNER = "alice"

users = sa.table(
    "users",
    sa.column("user_id", sa.String),
    sa.column("username", sa.String),
    sa.column("email", sa.String),
    sa.column("display_name", sa.String),
    sa.column("password_hash", sa.String),
)
groups = sa.table(
    "groups",
    sa.column("group_id", sa.String),
    sa.column("name", sa.String),
    sa.column("creator_id", sa.String),
    sa.column("owner_id", sa.String),
    sa.column("member_count", sa.Integer),
)
group_members = sa.table(
    "group_members",
    sa.column("group_id", sa.String),
    sa.column("user_id", sa.String),
    sa.column("role", sa.String),
)


def sample_data_requested() -> bool:
    """True when imchat.ops.migrate set the flag, or the CLI was given ``-x sample_data=true``."""
    if context.config.attributes.get("sample_data"):
        return True
    flag = context.get_x_argument(as_dictionary=True).get("sample_data", "")
    return flag.strip().lower() in {"1", "true", "yes", "on"}


def upgrade() -> None:
    if not sample_data_requested():
        return
    hasher = PasswordHasher()
    op.bulk_insert(
        users,
        [
            {
                "user_id": user_id,
                "username": name,
                "email": f"{name}@example.com",
                "display_name": name.capitalize(),
                # A fresh salt per user: never the same hash twice.
                "password_hash": hasher.hash(SAMPLE_PASSWORD),
            }
            for name, user_id in USERS.items()
        ],
    )
    owner_id = USERS[OWNER]
    op.bulk_insert(
        groups,
        [
            {
                "group_id": GROUP_ID,
                "name": GROUP_NAME,
                "creator_id": owner_id,
                "owner_id": owner_id,
                "member_count": len(USERS),
            }
        ],
    )
    op.bulk_insert(
        group_members,
        [
            {"group_id": GROUP_ID, "user_id": user_id, "role": _role(name)}
            for name, user_id in USERS.items()
        ],
    )


def downgrade() -> None:
    # Children first: SQLite does not enforce the ON DELETE CASCADE during migrations.
    op.execute(sa.delete(group_members).where(group_members.c.group_id == GROUP_ID))
    op.execute(sa.delete(groups).where(groups.c.group_id == GROUP_ID))
    op.execute(sa.delete(users).where(users.c.user_id.in_(list(USERS.values()))))


def _role(name: str) -> str:
    return "owner" if name == OWNER else "member"
