"""Web Push under /api/v1: the caller's browser subscriptions, the VAPID
public key browsers subscribe with, and the caller's switch per conversation."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify
from marshmallow import Schema, fields, validate

from imchat.api import schemas
from imchat.api.auth_guard import current_user_id, require_auth
from imchat.api.openapi import operation
from imchat.container import services_of
from imchat.errors import APIError
from imchat.services.push import subscriptions
from imchat.wire.fields import StrictBoolean, storable, text

bp = Blueprint("push", __name__, url_prefix="/api/v1")

MAX_ENDPOINT = 2048


def endpoint_field(**kwargs: object) -> fields.String:
    # The scheme is checked against IMCHAT_PUSH_ENDPOINT_SCHEMES by the service.
    return fields.String(
        required=True,
        validate=[
            validate.Length(1, MAX_ENDPOINT),
            storable,
            validate.URL(schemes={"http", "https"}, require_tld=False),
        ],
        **kwargs,  # type: ignore[arg-type]
    )


class PushKeysSchema(schemas.StrictSchema):
    p256dh = text(1, 128, required=True)
    auth = text(1, 64, required=True)


class PushSubscriptionSchema(schemas.StrictSchema):
    """A browser's ``PushSubscription.toJSON()``."""

    endpoint = endpoint_field()
    keys = fields.Nested(PushKeysSchema, required=True)
    # Sent by browsers (mostly null); push services say when a subscription ends (410).
    expiration_time = fields.Float(allow_none=True, load_default=None, data_key="expirationTime")


class PushEndpointSchema(schemas.StrictSchema):
    endpoint = endpoint_field()


class SubscribedSchema(Schema):
    endpoint = fields.String(required=True)


class VapidKeySchema(Schema):
    key = fields.String(required=True, metadata={"description": "applicationServerKey, base64url"})


class PushSwitchSchema(Schema):
    conversation_id = fields.String(required=True)
    push = fields.Boolean(required=True, metadata={"description": "whether the caller is notified"})
    setting = fields.Boolean(
        required=True,
        allow_none=True,
        metadata={"description": "the caller's switch; null: the default rule"},
    )


class PushSwitchUpdateSchema(schemas.StrictSchema):
    push = StrictBoolean(required=True, allow_none=True)


@bp.post("/users/me/push-subscriptions")
@operation(
    "register this browser's Web Push subscription for the caller (again: keys replaced)",
    201,
    SubscribedSchema,
    PushSubscriptionSchema,
    (400, 413),
    "push",
)
@require_auth
def subscribe() -> tuple[Response, int]:
    data = schemas.load(PushSubscriptionSchema())
    keys = data["keys"]
    subscriptions.subscribe(
        services_of(current_app), current_user_id(), data["endpoint"], keys["p256dh"], keys["auth"]
    )
    return jsonify({"endpoint": data["endpoint"]}), 201


@bp.delete("/users/me/push-subscriptions")
@operation(
    "remove the caller's subscription of an endpoint (also when there is none)",
    204,
    body=PushEndpointSchema,
    errors=(400, 413),
    tag="push",
)
@require_auth
def unsubscribe() -> tuple[str, int]:
    data = schemas.load(PushEndpointSchema())
    subscriptions.unsubscribe(services_of(current_app), current_user_id(), data["endpoint"])
    return "", 204


@bp.get("/push/vapid-public-key")
@operation(
    "the VAPID public key browsers subscribe with (uncompressed P-256 point, base64url)",
    200,
    VapidKeySchema,
    errors=(503,),
    tag="push",
)
@require_auth
def vapid_public_key() -> Response:
    try:
        key = services_of(current_app).vapid.public_key
    except RuntimeError as exc:
        current_app.logger.error("Web Push is not configured: %s", exc)
        raise APIError(503, "Web Push is not configured") from None
    return jsonify({"key": key})


@bp.get("/conversations/<conversation_id>/push")
@operation(
    "whether the caller is notified of the conversation's messages by Web Push",
    200,
    PushSwitchSchema,
    errors=(403, 404),
    tag="push",
)
@require_auth
def get_switch(conversation_id: str) -> Response:
    view = subscriptions.switch_view(services_of(current_app), current_user_id(), conversation_id)
    return jsonify(view)


@bp.put("/conversations/<conversation_id>/push")
@operation(
    "turn Web Push for the conversation on or off for the caller (null: the default rule)",
    200,
    PushSwitchSchema,
    PushSwitchUpdateSchema,
    (400, 403, 404, 413),
    "push",
)
@require_auth
def put_switch(conversation_id: str) -> Response:
    data = schemas.load(PushSwitchUpdateSchema())
    view = subscriptions.set_switch(
        services_of(current_app), current_user_id(), conversation_id, data["push"]
    )
    return jsonify(view)
