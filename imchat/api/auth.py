"""POST /api/v1/auth/register and /api/v1/auth/login, rate limited."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify, request

from imchat.api import schemas
from imchat.api.openapi import operation
from imchat.backends.ratelimit import Limit, auth_limits
from imchat.container import services_of
from imchat.errors import APIError
from imchat.services import auth as auth_service
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
    token, ttl = auth_service.issue_token(services, user_id)
    body = {"access_token": token, "token_type": "Bearer", "expires_in": ttl, "user_id": user_id}
    return jsonify(schemas.TokenSchema().dump(body))
