"""Passwords (argon2id) and access tokens (JWT, HS256, naming their session)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import lru_cache

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from imchat.config import Settings
from imchat.container import Services
from imchat.errors import APIError
from imchat.stores import sessions as session_store

# argon2-cffi's own defaults (RFC 9106, low-memory profile): about 0.15 s per
# hash here, which is the point: guessing passwords from a stolen table is slow.
ALGORITHM = "HS256"
BEARER_CHALLENGE = {"WWW-Authenticate": 'Bearer error="invalid_token"'}


@lru_cache(maxsize=8)
def _hasher(time_cost: int, memory_cost: int, parallelism: int) -> PasswordHasher:
    return PasswordHasher(time_cost=time_cost, memory_cost=memory_cost, parallelism=parallelism)


def password_hasher(settings: Settings) -> PasswordHasher:
    """The hasher for new hashes; older hashes verify with the parameters they carry."""
    return _hasher(
        settings.password_hash_time_cost,
        settings.password_hash_memory_kib,
        settings.password_hash_parallelism,
    )


@lru_cache(maxsize=8)
def _decoy_hash(hasher: PasswordHasher) -> str:
    return hasher.hash("decoy password, never matches a login")


def hash_password(settings: Settings, password: str) -> str:
    """A salted argon2id hash of ``password``."""
    return password_hasher(settings).hash(password)


def check_password(settings: Settings, password_hash: str | None, password: str) -> bool:
    """True when ``password`` matches; an unknown user (None) costs the same time."""
    hasher = password_hasher(settings)
    try:
        # Verify against a decoy for unknown users, so that timing does not tell
        # which usernames exist.
        hasher.verify(password_hash or _decoy_hash(hasher), password)
    except (VerificationError, InvalidHashError):
        return False
    return password_hash is not None


@dataclass(frozen=True)
class Identity:
    """Who a valid access token speaks for: a user, in one of their sessions."""

    user_id: str
    session_id: str


def issue_token(services: Services, user_id: str, session_id: str) -> tuple[str, int]:
    """A signed access token of ``user_id``'s session and its lifetime in seconds."""
    ttl = services.settings.token_ttl_seconds
    now = int(time.time())
    claims = {"sub": user_id, "sid": session_id, "iat": now, "exp": now + ttl}
    return jwt.encode(claims, services.secret_key, algorithm=ALGORITHM), ttl


def token_identity(services: Services, token: str) -> Identity:
    """Whom a token was issued to; 401 when it is forged, malformed or expired."""
    try:
        claims = jwt.decode(
            token,
            services.secret_key,
            algorithms=[ALGORITHM],
            options={"require": ["sub", "sid", "iat", "exp"]},
        )
    except jwt.ExpiredSignatureError:
        raise APIError(401, "the access token has expired", headers=BEARER_CHALLENGE) from None
    except jwt.InvalidTokenError:
        raise APIError(401, "invalid access token", headers=BEARER_CHALLENGE) from None
    return Identity(str(claims["sub"]), str(claims["sid"]))


def verify_access(services: Services, token: str) -> Identity:
    """The identity of a valid token whose session is open and whose user
    exists; else APIError 401. One indexed read: the session joined to its user."""
    identity = token_identity(services, token)
    with services.db.session() as session:
        if not session_store.is_active(session, identity.session_id, identity.user_id):
            raise APIError(401, "the session has ended", headers=BEARER_CHALLENGE)
    return identity


def verify_token(services: Services, token: str) -> str:
    """The user id of a token that ``verify_access`` lets through."""
    return verify_access(services, token).user_id
