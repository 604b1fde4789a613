"""Profiles: GET/PATCH /api/v1/users/me, GET /api/v1/users/{user_id} and by username."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify

from imchat.api import schemas
from imchat.api.auth import enforce
from imchat.api.auth_guard import current_identity, current_user_id, require_auth
from imchat.api.openapi import operation
from imchat.backends.ratelimit import auth_limits
from imchat.container import services_of
from imchat.services import sessions as session_service
from imchat.services import users as user_service

bp = Blueprint("users", __name__, url_prefix="/api/v1/users")


@bp.get("/me")
@operation("the caller's profile", 200, schemas.ProfileSchema, tag="users")
@require_auth
def get_me() -> Response:
    user = user_service.profile(services_of(current_app), current_user_id())
    return jsonify(schemas.ProfileSchema().dump(user))


@bp.patch("/me")
@operation(
    "change display_name, email or avatar_url (null clears)",
    200,
    schemas.ProfileSchema,
    schemas.ProfileUpdateSchema,
    (400, 413),
    "users",
)
@require_auth
def patch_me() -> Response:
    changes = schemas.load(schemas.ProfileUpdateSchema())
    user = user_service.update_profile(services_of(current_app), current_user_id(), changes)
    return jsonify(schemas.ProfileSchema().dump(user))


@bp.post("/me/password")
@operation(
    "change the password (the old one checked); every other session ends",
    204,
    body=schemas.PasswordChangeSchema,
    errors=(400, 403, 413, 429),
    tag="users",
)
@require_auth
def change_password() -> tuple[str, int]:
    services = services_of(current_app)
    identity = current_identity()
    # Guessing the old password through a stolen token is as slow as a login.
    enforce(auth_limits(services.settings).login_per_username, identity.user_id)
    data = schemas.load(schemas.PasswordChangeSchema())
    session_service.change_password(services, identity, data["old_password"], data["new_password"])
    return "", 204


@bp.get("/<user_id>")
@operation(
    "another user's public profile", 200, schemas.PublicProfileSchema, errors=(404,), tag="users"
)
@require_auth
def get_user(user_id: str) -> Response:
    user = user_service.profile(services_of(current_app), user_id)
    return jsonify(schemas.PublicProfileSchema().dump(user))


@bp.get("/by-username/<username>")
@operation(
    "the public profile of the user with this username (how a chat is started by name)",
    200,
    schemas.PublicProfileSchema,
    errors=(404,),
    tag="users",
)
@require_auth
def get_user_by_username(username: str) -> Response:
    user = user_service.profile_by_username(services_of(current_app), username)
    return jsonify(schemas.PublicProfileSchema().dump(user))
