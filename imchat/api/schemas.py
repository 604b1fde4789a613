"""Request and response bodies of the account and group API (marshmallow).

Unknown fields in a request are rejected (400), like every other field problem.
The OpenAPI document (``imchat.api.openapi``) is generated from these classes.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from flask import request
from marshmallow import RAISE, Schema, ValidationError, fields, validate

from imchat.errors import APIError
from imchat.stores.models import ROLES
from imchat.wire.fields import storable, text

USERNAME_PATTERN = r"\A[a-z0-9_]{3,32}\Z"  # \Z, not $: "$" would let a trailing newline in
MAX_GROUP_MEMBERS_AT_CREATION = 1000


class UtcDateTime(fields.DateTime):
    """Naive UTC datetimes from the database, written as ISO 8601 with an offset."""

    def _serialize(self, value: datetime | None, attr: str | None, obj: Any, **kwargs: Any) -> Any:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return super()._serialize(value, attr, obj, **kwargs)


class StrictSchema(Schema):
    class Meta:
        unknown = RAISE


def email_field(**kwargs: Any) -> fields.Email:
    return fields.Email(validate=[validate.Length(max=255), storable], **kwargs)


def avatar_field(**kwargs: Any) -> fields.URL:
    return fields.URL(
        schemes={"http", "https"}, validate=[validate.Length(max=512), storable], **kwargs
    )


# ---------------------------------------------------------------- requests
class RegisterSchema(StrictSchema):
    username = fields.String(
        required=True,
        validate=validate.Regexp(USERNAME_PATTERN, error="3 to 32 characters of a-z, 0-9 and _"),
    )
    password = text(8, 128, required=True, load_only=True)
    email = email_field(allow_none=True)
    display_name = text(1, 64, allow_none=True)


class LoginSchema(StrictSchema):
    # Loose on purpose: a wrong username is a 401, not a lesson in the rules.
    username = text(1, 64, required=True)
    password = text(1, 128, required=True, load_only=True)


class ProfileUpdateSchema(StrictSchema):
    """Any of the fields; null clears one."""

    display_name = text(1, 64, allow_none=True)
    email = email_field(allow_none=True)
    avatar_url = avatar_field(allow_none=True)


class GroupCreateSchema(StrictSchema):
    name = text(1, 100, required=True)
    member_ids = fields.List(
        text(1, 64),
        load_default=list,
        validate=validate.Length(max=MAX_GROUP_MEMBERS_AT_CREATION),
    )


class MemberAddSchema(StrictSchema):
    user_id = text(1, 64, required=True)
    role = fields.String(load_default="member", validate=validate.OneOf(("admin", "member")))


class RoleUpdateSchema(StrictSchema):
    role = fields.String(required=True, validate=validate.OneOf(ROLES))


# --------------------------------------------------------------- responses
class TokenSchema(Schema):
    access_token = fields.String(required=True)
    token_type = fields.String(required=True, dump_default="Bearer")
    expires_in = fields.Integer(required=True, metadata={"description": "seconds"})
    user_id = fields.String(required=True)
    refresh_token = fields.String(
        required=True, metadata={"description": "works once: POST /auth/refresh"}
    )


class RefreshSchema(StrictSchema):
    refresh_token = text(1, 256, required=True, load_only=True)


class TicketSchema(Schema):
    ticket = fields.String(required=True, metadata={"description": "for GET /ws?ticket="})
    expires_in = fields.Integer(required=True, metadata={"description": "seconds, one use"})


class PasswordChangeSchema(StrictSchema):
    old_password = text(1, 128, required=True, load_only=True)
    new_password = text(8, 128, required=True, load_only=True)


class PublicProfileSchema(Schema):
    user_id = fields.String(required=True)
    username = fields.String(required=True)
    display_name = fields.String(allow_none=True)
    avatar_url = fields.String(allow_none=True)


class ProfileSchema(PublicProfileSchema):
    email = fields.String(allow_none=True)
    created_at = UtcDateTime()


class GroupSchema(Schema):
    group_id = fields.String(required=True)
    name = fields.String(required=True)
    owner_id = fields.String(required=True)
    creator_id = fields.String()
    member_count = fields.Integer(required=True)
    created_at = UtcDateTime()


class MemberSchema(Schema):
    user_id = fields.String(required=True)
    role = fields.String(required=True, validate=validate.OneOf(ROLES))
    joined_at = UtcDateTime()


class MembershipSchema(Schema):
    group_id = fields.String(required=True)
    user_id = fields.String(required=True)
    role = fields.String(required=True, validate=validate.OneOf(ROLES))


class ErrorBodySchema(Schema):
    code = fields.String(required=True)
    message = fields.String(required=True)
    details = fields.Raw(metadata={"description": "field problems, when validation failed"})


class ErrorSchema(Schema):
    error = fields.Nested(ErrorBodySchema, required=True)


# ------------------------------------------------------------------ loading
def json_body() -> Any:
    """The request's JSON body, whatever its Content-Type; 400 when it is not JSON."""
    raw = request.get_data(cache=True)  # raises 413 past MAX_CONTENT_LENGTH
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        # RecursionError: deeply nested arrays exhaust the C parser's stack guard.
        raise APIError(400, "the body must be a JSON object") from None


def load(schema: Schema, data: Any = None) -> dict[str, Any]:
    """Validate ``data`` (default: the request's JSON body); 400 with the field problems."""
    body = json_body() if data is None else data
    if not isinstance(body, dict):
        raise APIError(400, "the body must be a JSON object")
    try:
        result: dict[str, Any] = schema.load(body)
    except ValidationError as err:
        raise APIError(400, "invalid request", details=err.messages) from None
    return result
