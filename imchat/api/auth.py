"""/api/v1/auth: register and login (rate limited), refresh, logout, ws-ticket."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify, request

from imchat.api import schemas
from imchat.api.auth_guard import current_identity, require_auth
from imchat.api.openapi import operation
from imchat.backends.ratelimit import Limit, auth_limits
from imchat.container import services_of
from imchat.errors import APIError
from imchat.services import sessions as session_service
from imchat.services import users as user_service

bp = Blueprint("auth", __name__, url_prefix="/api/v1/auth")


def enforce(limit: Limit, key: str) -> None:
    """Count one attempt against ``limit``; 429 with Retry-After once it is used up."""
    wait = services_of(current_app).rate_limiter.hit(limit, key)
    if wait is not None:
        raise APIError(429, "too many attempts, retry later", headers={"Retry-After": str(wait)})


def client_address() -> str:
    # The socket's peer; behind a proxy the deployment must apply ProxyFix first.
    return request.remote_addr or "unknown"


@bp.post("/register")
@operation(
    "create an account",
    201,
    schemas.ProfileSchema,
    schemas.RegisterSchema,
    (400, 409, 413, 429),
    "auth",
)
def register() -> tuple[Response, int]:
    limits = auth_limits(services_of(current_app).settings)
    enforce(limits.register_per_address, client_address())
    data = schemas.load(schemas.RegisterSchema())
    enforce(limits.register_per_username, data["username"])
    user = user_service.register(services_of(current_app), **data)
    return jsonify(schemas.ProfileSchema().dump(user)), 201


@bp.post("/login")
@operation(
    "exchange username and password for an access token",
    200,
    schemas.TokenSchema,
    schemas.LoginSchema,
    (400, 401, 413, 429),
    "auth",
)
def login() -> Response:
    services = services_of(current_app)
    limits = auth_limits(services.settings)
    enforce(limits.login_per_address, client_address())
    data = schemas.load(schemas.LoginSchema())
    enforce(limits.login_per_username, data["username"])
    user_id = user_service.authenticate(services, data["username"], data["password"])
    return jsonify(schemas.TokenSchema().dump(session_service.open_session(services, user_id)))


@bp.post("/refresh")
@operation(
    "new tokens for a refresh token (each works once; a reused one ends its session)",
    200,
    schemas.TokenSchema,
    schemas.RefreshSchema,
    (400, 401, 413),
    "auth",
)
def refresh() -> Response:
    data = schemas.load(schemas.RefreshSchema())
    tokens = session_service.refresh(services_of(current_app), data["refresh_token"])
    return jsonify(schemas.TokenSchema().dump(tokens))


@bp.post("/logout")
@operation("end the caller's session (its sockets close with 4401)", 204, tag="auth")
@require_auth
def logout() -> tuple[str, int]:
    session_service.logout(services_of(current_app), current_identity())
    return "", 204


@bp.post("/ws-ticket")
@operation(
    "a one-use ticket for GET /ws?ticket= (no long-lived token in a URL)",
    200,
    schemas.TicketSchema,
    tag="auth",
)
@require_auth
def ws_ticket() -> Response:
    ticket, ttl = session_service.issue_ticket(services_of(current_app), current_identity())
    return jsonify(schemas.TicketSchema().dump({"ticket": ticket, "expires_in": ttl}))
