"""``send``: a message to a user or a group, put on the bus; the ack follows from the consumer."""

from __future__ import annotations

import logging
import time
import uuid
from typing import TYPE_CHECKING, Any

from marshmallow import ValidationError, validates_schema

from imchat import metrics
from imchat.gateway.frames.base import ClientFrame, FrameError, FrameSchema
from imchat.services import blocks, conversations, groups
from imchat.wire.bus import MessageEnvelope
from imchat.wire.fields import seq_field, text
from imchat.wire.ids import direct_conversation_id, group_conversation_id
from imchat.wire.topics import DIRECT_MSG, GROUP_MSG

if TYPE_CHECKING:
    from imchat.gateway.connection import Connection
    from imchat.gateway.hub import Gateway

log = logging.getLogger("imchat.gateway")
MAX_BODY = 4000


class Send(ClientFrame):
    TYPE = "send"

    class Schema(FrameSchema):
        # Every string must be storable: JSON lets a lone surrogate (\ud800)
        # through, which no database (nor UTF-8) can hold.
        id = text(1, 64, required=True)
        to = text(1, 64)
        group = text(1, 64)
        body = text(1, MAX_BODY, required=True)
        reply_to = seq_field()

        @validates_schema
        def exactly_one_target(self, data: dict[str, Any], **_: Any) -> None:
            if ("to" in data) == ("group" in data):
                raise ValidationError("a send names exactly one of 'to' and 'group'", "_schema")

    def handle(self, gateway: Gateway, conn: Connection, frame: dict[str, Any]) -> None:
        conversation_id = self._conversation_of(gateway, conn, frame)
        reply_to = frame.get("reply_to")
        if reply_to is not None and not conversations.readable_message(
            gateway.services, conn.user_id, conversation_id, reply_to
        ):
            raise FrameError("not_found", "no such message to reply to", frame["id"])
        envelope = MessageEnvelope(
            msg_id=uuid.uuid4().hex,
            cid=frame["id"],
            sender=conn.user_id,
            conversation_id=conversation_id,
            body=frame["body"],
            ts=int(time.time() * 1000),
            gateway=gateway.gateway_id,
            conn=conn.conn_id,
            to=frame.get("to"),
            group=frame.get("group"),
            reply_to=reply_to,
        )
        topic = GROUP_MSG.name if envelope.group is not None else DIRECT_MSG.name
        # Tracked before publishing: the ack may come back before publish returns.
        value = envelope.encode()
        conn.track_send(envelope.cid, topic, envelope.conversation_id, value)
        try:
            gateway.services.bus.publish(topic, envelope.conversation_id, value)
        except BaseException:
            conn.untrack_send(envelope.cid)
            raise
        metrics.MESSAGES_ACCEPTED.labels(envelope.kind).inc()
        trace = {"msg_id": envelope.msg_id, "user_id": conn.user_id}
        log.debug("accepted: on the bus", extra={**trace, "gateway_id": gateway.gateway_id})

    @staticmethod
    def _conversation_of(gateway: Gateway, conn: Connection, frame: dict[str, Any]) -> str:
        """The conversation the send goes to, once the sender may write to it."""
        cid = frame["id"]
        if "group" in frame:
            members = groups.member_ids(gateway.services, frame["group"])
            if members is None:
                raise FrameError("not_found", "no such group", cid)
            if conn.user_id not in members:
                raise FrameError("forbidden", "not a member of this group", cid)
            return group_conversation_id(frame["group"])
        if not gateway.user_exists(frame["to"]):
            raise FrameError("not_found", "no such user", cid)
        if frame["to"] in blocks.blockers_of(gateway.services, conn.user_id):
            raise FrameError("forbidden", "this user does not accept your messages", cid)
        return direct_conversation_id(conn.user_id, frame["to"])
