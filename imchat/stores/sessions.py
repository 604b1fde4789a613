"""Login sessions: open, rotate the refresh token, end (one or all but one)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from imchat.stores.models import AuthSession, User


@dataclass(frozen=True)
class SessionRecord:
    session_id: str
    user_id: str
    refresh_hash: str
    expires_at: datetime
    ended_at: datetime | None


def open_session(
    session: Session,
    session_id: str,
    user_id: str,
    refresh_hash: str,
    now: datetime,
    expires_at: datetime,
) -> None:
    session.add(
        AuthSession(
            session_id=session_id,
            user_id=user_id,
            refresh_hash=refresh_hash,
            created_at=now,
            refreshed_at=now,
            expires_at=expires_at,
        )
    )


def find(session: Session, session_id: str) -> SessionRecord | None:
    row = session.get(AuthSession, session_id)
    if row is None:
        return None
    return SessionRecord(
        row.session_id, row.user_id, row.refresh_hash, row.expires_at, row.ended_at
    )


def is_active(session: Session, session_id: str, user_id: str) -> bool:
    """Whether the session of ``user_id`` is open and its user still exists:
    what every authenticated request asks, in one statement."""
    query = (
        select(AuthSession.session_id)
        .join(User, User.user_id == AuthSession.user_id)
        .where(
            AuthSession.session_id == session_id,
            AuthSession.user_id == user_id,
            AuthSession.ended_at.is_(None),
        )
    )
    return session.execute(query).first() is not None


def rotate(
    session: Session,
    session_id: str,
    old_hash: str,
    new_hash: str,
    now: datetime,
    expires_at: datetime,
) -> bool:
    """Replace the refresh token if ``old_hash`` is still the current one
    (a compare-and-set: of two racing refreshes with one token, one wins)."""
    result = session.execute(
        update(AuthSession)
        .where(
            AuthSession.session_id == session_id,
            AuthSession.refresh_hash == old_hash,
            AuthSession.ended_at.is_(None),
            AuthSession.expires_at > now,
        )
        .values(refresh_hash=new_hash, refreshed_at=now, expires_at=expires_at)
    )
    return bool(getattr(result, "rowcount", 0))


def end(session: Session, session_ids: Iterable[str], now: datetime) -> None:
    ids = sorted(set(session_ids))
    if ids:
        session.execute(
            update(AuthSession)
            .where(AuthSession.session_id.in_(ids), AuthSession.ended_at.is_(None))
            .values(ended_at=now)
        )


def open_of(session: Session, user_id: str, but: str | None = None) -> list[str]:
    """The user's sessions that have not ended (but one, if named)."""
    query = select(AuthSession.session_id).where(
        AuthSession.user_id == user_id, AuthSession.ended_at.is_(None)
    )
    if but is not None:
        query = query.where(AuthSession.session_id != but)
    return list(session.scalars(query))


def ended_among(session: Session, session_ids: Iterable[str]) -> set[str]:
    """Which of these sessions have ended (or never existed)."""
    ids = sorted(set(session_ids))
    if not ids:
        return set()
    query = select(AuthSession.session_id).where(
        AuthSession.session_id.in_(ids), AuthSession.ended_at.is_(None)
    )
    return set(ids) - set(session.scalars(query))
