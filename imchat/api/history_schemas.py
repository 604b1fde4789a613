"""Query strings and bodies of the conversation and history API (marshmallow)."""

from __future__ import annotations

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from imchat.api.schemas import GroupSchema, StrictSchema
from imchat.stores.models import ROLES
from imchat.wire.fields import MAX_SEQ, text

MAX_PAGE = 100


def page_limit() -> fields.Integer:
    return fields.Integer(load_default=50, validate=validate.Range(1, MAX_PAGE))


def seq_bound(low: int) -> fields.Integer:
    """A seq in a query string (text, so not strict), at least ``low``."""
    return fields.Integer(validate=validate.Range(min=low, max=MAX_SEQ))


# ----------------------------------------------------------------- queries
class ConversationListQuery(StrictSchema):
    limit = page_limit()
    before = text(1, 200, metadata={"description": "the `next` cursor of the page before"})


class HistoryQuery(StrictSchema):
    before_seq = seq_bound(1)
    after_seq = seq_bound(0)
    limit = page_limit()

    @validates_schema
    def one_bound(self, data: dict[str, object], **_: object) -> None:
        if "before_seq" in data and "after_seq" in data:
            raise ValidationError("at most one of before_seq and after_seq", "_schema")


# --------------------------------------------------------------- responses
class MessageSchema(Schema):
    """A message in its current state (M in docs/api.md)."""

    msg_id = fields.String(required=True)
    conversation_id = fields.String(required=True)
    seq = fields.Integer(required=True)
    sender = fields.String(required=True, data_key="from")
    to = fields.String()
    group = fields.String()
    body = fields.String(allow_none=True, required=True)
    ts = fields.Integer(required=True, metadata={"description": "ms since the epoch"})
    reply_to = fields.Integer(allow_none=True, required=True)
    edited_at = fields.Integer(allow_none=True, required=True)
    deleted = fields.Boolean(required=True)
    reactions = fields.Dict(
        keys=fields.String(), values=fields.List(fields.String()), required=True
    )


class PresenceSchema(Schema):
    status = fields.String(required=True, validate=validate.OneOf(("online", "offline")))
    last_seen = fields.Integer(
        allow_none=True,
        required=True,
        metadata={"description": "ms since the epoch when offline; null online or never seen"},
    )


class ConversationSchema(Schema):
    """A conversation of the caller (C in docs/api.md)."""

    conversation_id = fields.String(required=True)
    kind = fields.String(required=True, validate=validate.OneOf(("direct", "group")))
    peer_id = fields.String(metadata={"description": "direct conversations"})
    peer_delivered_seq = fields.Integer(
        metadata={"description": "direct: the other user's delivered mark (ticks)"}
    )
    peer_read_seq = fields.Integer(
        metadata={"description": "direct: the other user's read mark (ticks)"}
    )
    presence = fields.Nested(
        PresenceSchema,
        allow_none=True,
        metadata={"description": "direct: the peer's presence; null when a block hides it"},
    )
    group_id = fields.String(metadata={"description": "group conversations"})
    name = fields.String(metadata={"description": "group conversations"})
    last_seq = fields.Integer(required=True)
    last_message = fields.Nested(MessageSchema, allow_none=True, required=True)
    last_activity = fields.Integer(required=True, metadata={"description": "ms since the epoch"})
    delivered_seq = fields.Integer(required=True)
    read_seq = fields.Integer(required=True)
    unread = fields.Integer(required=True)


class ConversationPageSchema(Schema):
    conversations = fields.List(fields.Nested(ConversationSchema), required=True)
    next = fields.String(allow_none=True, required=True)


class HistoryPageSchema(Schema):
    messages = fields.List(fields.Nested(MessageSchema), required=True)
    has_more = fields.Boolean(required=True)


class MyGroupSchema(GroupSchema):
    role = fields.String(required=True, validate=validate.OneOf(ROLES))


class GroupListSchema(Schema):
    groups = fields.List(fields.Nested(MyGroupSchema), required=True)
