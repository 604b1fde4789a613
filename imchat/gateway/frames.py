"""Client frames: one marshmallow schema per type; a registry maps type to schema."""

from __future__ import annotations

from typing import Any

from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates_schema

MAX_BODY = 4000


class FrameSchema(Schema):
    class Meta:
        unknown = RAISE

    type = fields.String(required=True)


class SendFrame(FrameSchema):
    id = fields.String(required=True, validate=validate.Length(1, 64))
    to = fields.String(validate=validate.Length(1, 64))
    group = fields.String(validate=validate.Length(1, 64))
    body = fields.String(required=True, validate=validate.Length(1, MAX_BODY))

    @validates_schema
    def exactly_one_target(self, data: dict[str, Any], **_: Any) -> None:
        if ("to" in data) == ("group" in data):
            raise ValidationError("a send names exactly one of 'to' and 'group'", "_schema")


class DeliveredFrame(FrameSchema):
    conversation_id = fields.String(required=True, validate=validate.Length(1, 80))
    seq = fields.Integer(required=True, strict=True, validate=validate.Range(min=1))


class PingFrame(FrameSchema):
    pass


SCHEMAS: dict[str, Schema] = {
    "send": SendFrame(),
    "delivered": DeliveredFrame(),
    "ping": PingFrame(),
}
