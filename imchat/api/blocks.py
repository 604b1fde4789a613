"""The caller's blocks under /api/v1/users/me/blocks."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify
from marshmallow import Schema, fields

from imchat.api import schemas
from imchat.api.auth_guard import current_user_id, require_auth
from imchat.api.openapi import operation
from imchat.container import services_of
from imchat.services import blocks as block_service
from imchat.wire.fields import text

bp = Blueprint("blocks", __name__, url_prefix="/api/v1/users/me/blocks")


class BlockCreateSchema(schemas.StrictSchema):
    user_id = text(1, 64, required=True)


class BlockSchema(Schema):
    user_id = fields.String(required=True)


class BlockListSchema(Schema):
    blocked = fields.List(fields.String(), required=True)


@bp.post("")
@operation(
    "block a user: no direct messages, typing or presence from them (idempotent)",
    201,
    BlockSchema,
    BlockCreateSchema,
    (400, 404, 413),
    "users",
)
@require_auth
def block() -> tuple[Response, int]:
    data = schemas.load(BlockCreateSchema())
    block_service.block(services_of(current_app), current_user_id(), data["user_id"])
    return jsonify({"user_id": data["user_id"]}), 201


@bp.get("")
@operation("the users the caller blocks, oldest block first", 200, BlockListSchema, tag="users")
@require_auth
def list_blocks() -> Response:
    blocked = block_service.blocked_of(services_of(current_app), current_user_id())
    return jsonify({"blocked": blocked})


@bp.delete("/<user_id>")
@operation("unblock a user (also when not blocked)", 204, tag="users")
@require_auth
def unblock(user_id: str) -> tuple[str, int]:
    block_service.unblock(services_of(current_app), current_user_id(), user_id)
    return "", 204
