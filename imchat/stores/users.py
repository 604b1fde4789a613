"""SQL for user accounts."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from imchat.stores.models import User

# The profile fields a user may change after registering.
EDITABLE = ("display_name", "email", "avatar_url")


@dataclass(frozen=True)
class UserRecord:
    user_id: str
    username: str
    email: str | None
    display_name: str | None
    avatar_url: str | None
    password_hash: str
    created_at: datetime | None


def _record(user: User) -> UserRecord:
    return UserRecord(
        user_id=user.user_id,
        username=user.username,
        email=user.email,
        display_name=user.display_name,
        avatar_url=user.avatar_url,
        password_hash=user.password_hash,
        created_at=user.created_at,
    )


def insert(
    session: Session,
    user_id: str,
    username: str,
    password_hash: str,
    created_at: datetime,
    **profile: Any,
) -> UserRecord:
    """Add a user; the unique username raises IntegrityError on flush when taken."""
    user = User(
        user_id=user_id,
        username=username,
        password_hash=password_hash,
        created_at=created_at,
        updated_at=created_at,
        **{k: v for k, v in profile.items() if k in EDITABLE},
    )
    session.add(user)
    session.flush()
    return _record(user)


def by_id(session: Session, user_id: str) -> UserRecord | None:
    user = session.get(User, user_id)
    return _record(user) if user else None


def by_username(session: Session, username: str) -> UserRecord | None:
    """The user called exactly ``username``.

    MariaDB's default collation ignores case and trailing spaces; comparing
    again here makes both databases answer the same (login, lookups).
    """
    user = session.scalars(select(User).where(User.username == username)).first()
    return _record(user) if user and user.username == username else None


def username_taken(session: Session, username: str) -> bool:
    return session.scalar(select(User.user_id).where(User.username == username)) is not None


def exists(session: Session, user_id: str) -> bool:
    return session.scalar(select(User.user_id).where(User.user_id == user_id)) is not None


def missing(session: Session, user_ids: Iterable[str]) -> list[str]:
    """Those of ``user_ids`` that name no user, in the order given."""
    wanted = list(dict.fromkeys(user_ids))
    if not wanted:
        return []
    found = set(session.scalars(select(User.user_id).where(User.user_id.in_(wanted))))
    return [u for u in wanted if u not in found]


def update_profile(
    session: Session, user_id: str, changes: Mapping[str, Any], now: datetime
) -> UserRecord | None:
    """Apply the editable fields of ``changes``; None when the user is gone."""
    user = session.get(User, user_id)
    if user is None:
        return None
    for name in EDITABLE:
        if name in changes:
            setattr(user, name, changes[name])
    user.updated_at = now
    session.flush()
    return _record(user)


def set_password_hash(session: Session, user_id: str, password_hash: str, now: datetime) -> None:
    session.execute(
        update(User)
        .where(User.user_id == user_id)
        .values(password_hash=password_hash, updated_at=now)
    )


def set_last_seen(session: Session, user_id: str, last_seen_ms: int) -> None:
    """When the user was last online; their profile's ``updated_at`` stays as it was."""
    session.execute(
        update(User)
        .where(User.user_id == user_id)
        .values(last_seen_ms=last_seen_ms, updated_at=User.updated_at)
    )


def names(session: Session, user_ids: Iterable[str]) -> dict[str, str]:
    """Each user's display name, or username when they have none."""
    ids = sorted(set(user_ids))
    if not ids:
        return {}
    rows = session.execute(
        select(User.user_id, User.display_name, User.username).where(User.user_id.in_(ids))
    )
    return {user_id: display or username for user_id, display, username in rows}
