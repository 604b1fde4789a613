"""Client frames: one marshmallow schema per type; a registry maps type to schema."""

from __future__ import annotations

from typing import Any

from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates_schema

from imchat.api.schemas import text

MAX_BODY = 4000


class FrameSchema(Schema):
    class Meta:
        unknown = RAISE

    type = fields.String(required=True)


class SendFrame(FrameSchema):
    # Every string must be storable: JSON lets a lone surrogate (\ud800)
    # through, which no database (nor UTF-8) can hold.
    id = text(1, 64, required=True)
    to = text(1, 64)
    group = text(1, 64)
    body = text(1, MAX_BODY, required=True)

    @validates_schema
    def exactly_one_target(self, data: dict[str, Any], **_: Any) -> None:
        if ("to" in data) == ("group" in data):
            raise ValidationError("a send names exactly one of 'to' and 'group'", "_schema")


class DeliveredFrame(FrameSchema):
    conversation_id = text(1, 80, required=True)
    # A seq is a signed 64-bit column in every database.
    seq = fields.Integer(required=True, strict=True, validate=validate.Range(min=1, max=2**63 - 1))


class PingFrame(FrameSchema):
    pass


SCHEMAS: dict[str, Schema] = {
    "send": SendFrame(),
    "delivered": DeliveredFrame(),
    "ping": PingFrame(),
}
