"""Groups and their members under /api/v1/groups."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify

from imchat.api import history_schemas as hs
from imchat.api import schemas
from imchat.api.auth_guard import current_user_id, require_auth
from imchat.api.openapi import operation
from imchat.container import services_of
from imchat.services import groups as group_service

bp = Blueprint("groups", __name__, url_prefix="/api/v1/groups")


@bp.post("")
@operation(
    "create a group; the caller becomes its owner",
    201,
    schemas.GroupSchema,
    schemas.GroupCreateSchema,
    (400, 404, 413),
    "groups",
)
@require_auth
def create_group() -> tuple[Response, int]:
    data = schemas.load(schemas.GroupCreateSchema())
    group = group_service.create_group(
        services_of(current_app), current_user_id(), data["name"], data["member_ids"]
    )
    return jsonify(schemas.GroupSchema().dump(group)), 201


@bp.get("")
@operation(
    "every group the caller is a member of, with the caller's role",
    200,
    hs.GroupListSchema,
    tag="groups",
)
@require_auth
def list_groups() -> Response:
    mine = group_service.groups_of(services_of(current_app), current_user_id())
    body = [{**schemas.GroupSchema().dump(group), "role": role} for group, role in mine]
    return jsonify({"groups": body})


@bp.get("/<group_id>")
@operation("the group (members only)", 200, schemas.GroupSchema, errors=(403, 404), tag="groups")
@require_auth
def get_group(group_id: str) -> Response:
    group = group_service.get_group(services_of(current_app), current_user_id(), group_id)
    return jsonify(schemas.GroupSchema().dump(group))


@bp.get("/<group_id>/members")
@operation(
    "the members and their roles (members only)",
    200,
    schemas.MemberSchema(many=True),
    errors=(403, 404),
    tag="groups",
)
@require_auth
def list_members(group_id: str) -> Response:
    members = group_service.list_members(services_of(current_app), current_user_id(), group_id)
    return jsonify(schemas.MemberSchema(many=True).dump(members))


@bp.post("/<group_id>/members")
@operation(
    "add a member (owner or admin; only the owner adds admins)",
    201,
    schemas.MembershipSchema,
    schemas.MemberAddSchema,
    (400, 403, 404, 409, 413),
    "groups",
)
@require_auth
def add_member(group_id: str) -> tuple[Response, int]:
    data = schemas.load(schemas.MemberAddSchema())
    membership = group_service.add_member(
        services_of(current_app), current_user_id(), group_id, data["user_id"], data["role"]
    )
    return jsonify(schemas.MembershipSchema().dump(membership)), 201


@bp.patch("/<group_id>/members/<user_id>")
@operation(
    "change a member's role (owner only; role owner hands the group over)",
    200,
    schemas.MembershipSchema,
    schemas.RoleUpdateSchema,
    (400, 403, 404, 409, 413),
    "groups",
)
@require_auth
def change_role(group_id: str, user_id: str) -> Response:
    data = schemas.load(schemas.RoleUpdateSchema())
    membership = group_service.change_role(
        services_of(current_app), current_user_id(), group_id, user_id, data["role"]
    )
    return jsonify(schemas.MembershipSchema().dump(membership))


@bp.delete("/<group_id>/members/<user_id>")
@operation(
    "remove a member (owner: anyone, admin: plain members) or leave (yourself)",
    204,
    errors=(403, 404),
    tag="groups",
)
@require_auth
def remove_member(group_id: str, user_id: str) -> tuple[str, int]:
    group_service.remove_member(services_of(current_app), current_user_id(), group_id, user_id)
    return "", 204
