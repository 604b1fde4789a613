"""The Bearer-token guard of authenticated routes."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import ParamSpec, TypeVar

from flask import current_app, g, request

from imchat.container import services_of
from imchat.errors import APIError
from imchat.services.auth import Identity, verify_access

P = ParamSpec("P")
R = TypeVar("R")

CHALLENGE = {"WWW-Authenticate": "Bearer"}


def bearer_token() -> str:
    """The token of ``Authorization: Bearer <token>``; 401 when there is none."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise APIError(401, "missing bearer token", headers=CHALLENGE)
    return token.strip()


def require_auth(view: Callable[P, R]) -> Callable[P, R]:
    """Let the request through only with a valid token of an existing user."""

    @wraps(view)
    def guarded(*args: P.args, **kwargs: P.kwargs) -> R:
        g.identity = verify_access(services_of(current_app), bearer_token())
        g.user_id = g.identity.user_id
        return view(*args, **kwargs)

    guarded.__dict__["requires_auth"] = True  # read by the OpenAPI generator
    return guarded


def current_user_id() -> str:
    """The authenticated caller of this request (inside a ``require_auth`` view)."""
    user_id: str = g.user_id
    return user_id


def current_identity() -> Identity:
    """The caller and the session its token belongs to."""
    identity: Identity = g.identity
    return identity
