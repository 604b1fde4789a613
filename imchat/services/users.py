"""Accounts: register, log in, profiles."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.exc import IntegrityError

from imchat.backends.base import BackendUnavailable
from imchat.container import Services
from imchat.errors import APIError
from imchat.services import auth
from imchat.stores import users as user_store
from imchat.stores.users import UserRecord

LOGIN_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="imchat"'}
EXISTS_CACHE_TTL = 3600


def utcnow() -> datetime:
    """Now in UTC, naive and whole seconds: what a MySQL DATETIME column keeps."""
    return datetime.now(UTC).replace(tzinfo=None, microsecond=0)


def _taken(username: str) -> APIError:
    return APIError(409, f"the username {username!r} is taken")


def register(services: Services, username: str, password: str, **profile: Any) -> UserRecord:
    """Create an account; 409 when the username is taken (also when two race for it)."""
    with services.db.session() as session:
        # Checked first to spare the slow hash; the unique index settles races.
        if user_store.username_taken(session, username):
            raise _taken(username)
    password_hash = auth.hash_password(services.settings, password)
    try:
        with services.db.session() as session:
            return user_store.insert(
                session, uuid.uuid4().hex, username, password_hash, utcnow(), **profile
            )
    except IntegrityError:
        raise _taken(username) from None


def authenticate(services: Services, username: str, password: str) -> str:
    """The user id for a correct username and password; else 401 (same for both cases)."""
    with services.db.session() as session:
        user = user_store.by_username(session, username)
    if not auth.check_password(services.settings, user.password_hash if user else None, password):
        # Every 401 names its scheme (RFC 9110): the token to come is a Bearer one.
        raise APIError(401, "wrong username or password", headers=LOGIN_CHALLENGE)
    assert user is not None  # check_password is False for an unknown user
    return user.user_id


def profile(services: Services, user_id: str) -> UserRecord:
    """The user's record; 404 when there is no such user."""
    with services.db.session() as session:
        user = user_store.by_id(session, user_id)
    if user is None:
        raise APIError(404, "no such user")
    return user


def profile_by_username(services: Services, username: str) -> UserRecord:
    """The record of the user called ``username``; 404 when there is none."""
    with services.db.session() as session:
        user = user_store.by_username(session, username)
    if user is None:
        raise APIError(404, f"no user is called {username!r}")
    return user


def update_profile(services: Services, user_id: str, changes: Mapping[str, Any]) -> UserRecord:
    """Change any of display_name, email, avatar_url (None clears one)."""
    with services.db.session() as session:
        user = user_store.update_profile(session, user_id, changes, utcnow())
    if user is None:
        raise APIError(404, "no such user")
    return user


def exists(services: Services, user_id: str) -> bool:
    """Whether the account exists, cached (accounts are never deleted).

    A cache that is down is skipped: the database answers instead.
    """
    key = f"user-exists:{user_id}"
    with contextlib.suppress(BackendUnavailable):
        if services.cache.get(key):
            return True
    with services.db.session() as session:
        found = user_store.exists(session, user_id)
    if found:
        with contextlib.suppress(BackendUnavailable):
            services.cache.set(key, "1", EXISTS_CACHE_TTL)
    return found
