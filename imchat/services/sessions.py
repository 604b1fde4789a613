"""Sessions: a login opens one; refresh tokens rotate; logout and a password
change end sessions, whose sockets every gateway then closes with 4401.

A refresh token is ``<session_id>.<secret>``; only sha256(secret) is stored,
and each refresh replaces it. A refresh token used a second time means it was
copied: the session ends (RFC 9700's refresh-token rotation with reuse
detection), and the thief's tokens die with the owner's.

Access tokens are short-lived JWTs (``token_ttl_seconds``, 15 minutes) naming
their session; every request checks the session is open (one indexed read,
the same one that checks the user exists). Sockets are not checked per frame:
ending a session tells the gateways holding its user's connections, and each
gateway also sweeps its connections' sessions now and then
(``gateway/sessions.py``) in case that word was lost.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from imchat.errors import APIError
from imchat.services import auth
from imchat.services.auth import BEARER_CHALLENGE, Identity
from imchat.services.delivery.outbox import Outbox
from imchat.services.users import utcnow
from imchat.stores import sessions as session_store
from imchat.stores import users as user_store

if TYPE_CHECKING:
    from imchat.container import Services

TICKET_PREFIX = "ws-ticket:"
USED = "used"


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _refused(message: str) -> APIError:
    return APIError(401, message, headers=BEARER_CHALLENGE)


def _reused(services: Services, user_id: str, session_id: str) -> APIError:
    """A refresh token used twice was copied: its session ends, for both holders."""
    end_sessions(services, user_id, [session_id])
    return _refused("refresh token reused; the session has ended")


def _tokens(services: Services, user_id: str, session_id: str, secret: str) -> dict[str, Any]:
    access, ttl = auth.issue_token(services, user_id, session_id)
    return {
        "access_token": access,
        "token_type": "Bearer",
        "expires_in": ttl,
        "user_id": user_id,
        "refresh_token": f"{session_id}.{secret}",
    }


def open_session(services: Services, user_id: str) -> dict[str, Any]:
    """A new session of ``user_id`` (a login): its access and refresh tokens."""
    session_id, secret = secrets.token_hex(16), secrets.token_urlsafe(32)
    now = utcnow()
    expires = now + timedelta(seconds=services.settings.refresh_ttl_seconds)
    with services.db.session() as session:
        session_store.open_session(session, session_id, user_id, _hash(secret), now, expires)
    return _tokens(services, user_id, session_id, secret)


def refresh(services: Services, refresh_token: str) -> dict[str, Any]:
    """New tokens for a refresh token that works once; a reused one ends its session."""
    session_id, _, secret = refresh_token.partition(".")
    now = utcnow()
    with services.db.session() as session:
        found = session_store.find(session, session_id) if secret else None
    if found is None or found.ended_at is not None:
        raise _refused("invalid refresh token")
    if found.expires_at <= now:
        raise _refused("the session has expired; log in again")
    if not hmac.compare_digest(found.refresh_hash, _hash(secret)):
        raise _reused(services, found.user_id, session_id)  # a copy was used
    new_secret = secrets.token_urlsafe(32)
    expires = now + timedelta(seconds=services.settings.refresh_ttl_seconds)
    with services.db.session() as session:
        rotated = session_store.rotate(
            session, session_id, found.refresh_hash, _hash(new_secret), now, expires
        )
    if not rotated:  # another refresh with the same token won the race: a reuse
        raise _reused(services, found.user_id, session_id)
    return _tokens(services, found.user_id, session_id, new_secret)


def logout(services: Services, identity: Identity) -> None:
    end_sessions(services, identity.user_id, [identity.session_id])


def change_password(services: Services, identity: Identity, old: str, new: str) -> None:
    """Set a new password (the old one checked); every other session ends."""
    with services.db.session() as session:
        user = user_store.by_id(session, identity.user_id)
    stored = user.password_hash if user else None
    if not auth.check_password(services.settings, stored, old):
        raise APIError(403, "the old password is wrong")
    new_hash = auth.hash_password(services.settings, new)
    with services.db.session() as session:
        user_store.set_password_hash(session, identity.user_id, new_hash, utcnow())
        others = session_store.open_of(session, identity.user_id, but=identity.session_id)
    end_sessions(services, identity.user_id, others)


def end_sessions(services: Services, user_id: str, session_ids: list[str]) -> None:
    """End the sessions in the database (from now on their tokens get 401),
    then tell the gateways holding the user's connections to close theirs."""
    if not session_ids:
        return
    with services.db.session() as session:
        session_store.end(session, session_ids, utcnow())
    outbox = Outbox(services)
    outbox.end_sessions(user_id, session_ids)
    outbox.send()


# ------------------------------------------------------------ socket tickets
def issue_ticket(services: Services, identity: Identity) -> tuple[str, int]:
    """A one-use ticket for ``GET /ws?ticket=``: no long-lived token in a URL."""
    ticket = secrets.token_urlsafe(24)
    ttl = services.settings.ws_ticket_ttl_seconds
    value = f"{identity.user_id} {identity.session_id}"
    services.cache.set(TICKET_PREFIX + _hash(ticket), value, ttl)  # down: 503
    return ticket, ttl


def redeem_ticket(services: Services, ticket: str) -> Identity:
    """The identity a ticket was issued to, once; 401 when unknown, used or expired."""
    key = TICKET_PREFIX + _hash(ticket)
    # Swapped for a tombstone: of two racing redeemers, one gets the identity.
    value = services.cache.exchange(key, USED, services.settings.ws_ticket_ttl_seconds)
    if value is None or value == USED:
        raise _refused("invalid or used ticket")
    user_id, _, session_id = value.partition(" ")
    with services.db.session() as session:
        if not session_store.is_active(session, session_id, user_id):
            raise _refused("the session has ended")
    return Identity(user_id, session_id)
