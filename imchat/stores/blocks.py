"""SQL for blocks: ``user_id`` blocks ``blocked_id``."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import Table, delete, select
from sqlalchemy.orm import Session

from imchat.stores.models import Block
from imchat.stores.sql import insert_ignore

BLOCKS: Table = Block.__table__  # type: ignore[assignment]
# A list of user ids read for one user: whom they block, or who blocks them.
Lookup = Callable[[Session, str], list[str]]


def add(session: Session, user_id: str, blocked_id: str) -> None:
    """Block; blocking again leaves the first row (and its time) as it is."""
    insert_ignore(session, BLOCKS, [{"user_id": user_id, "blocked_id": blocked_id}])


def remove(session: Session, user_id: str, blocked_id: str) -> None:
    session.execute(delete(Block).where(Block.user_id == user_id, Block.blocked_id == blocked_id))


def blocked_by(session: Session, user_id: str) -> list[str]:
    """Whom ``user_id`` blocks, oldest block first."""
    rows = session.scalars(
        select(Block.blocked_id)
        .where(Block.user_id == user_id)
        .order_by(Block.created_at, Block.blocked_id)
    )
    return list(rows)


def blockers_of(session: Session, user_id: str) -> list[str]:
    """Who blocks ``user_id``."""
    rows = session.scalars(
        select(Block.user_id).where(Block.blocked_id == user_id).order_by(Block.user_id)
    )
    return list(rows)
