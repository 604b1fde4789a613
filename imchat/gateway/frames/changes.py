"""``edit``, ``delete`` and ``react``: a change of a stored message, put on the bus
on the conversation's topic and key, behind the message it changes; the ack
and the ``update`` frames follow from the consumer once it is applied."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, ClassVar

from imchat.gateway.frames.base import ClientFrame, FrameError, FrameSchema
from imchat.gateway.frames.send import MAX_BODY
from imchat.services import message_changes
from imchat.wire.bus import MessageChange
from imchat.wire.fields import StrictBoolean, seq_field, text
from imchat.wire.topics import DIRECT_MSG, GROUP_MSG

if TYPE_CHECKING:
    from imchat.gateway.connection import Connection
    from imchat.gateway.hub import Gateway

MAX_EMOJI = 16


class ChangeSchema(FrameSchema):
    id = text(1, 64, required=True)
    conversation_id = text(1, 80, required=True)
    seq = seq_field(required=True)


class ChangeFrame(ClientFrame):
    """A change of the message at ``seq``: checked now, applied by the consumer."""

    KIND: ClassVar[str]

    def handle(self, gateway: Gateway, conn: Connection, frame: dict[str, Any]) -> None:
        conversation_id, seq = frame["conversation_id"], frame["seq"]
        try:
            message = message_changes.check(
                gateway.services,
                conn.user_id,
                frame["id"],
                conversation_id,
                seq,
                self.KIND,
                self.adds(frame),
            )
        except message_changes.ChangeRefused as refused:
            raise FrameError(refused.code, refused.message, frame["id"]) from None
        # A resend goes where the first one went, whatever it names now.
        conversation_id, seq = message.conversation_id, message.seq
        change = MessageChange(
            kind=self.KIND,
            cid=frame["id"],
            by=conn.user_id,
            conversation_id=conversation_id,
            seq=seq,
            msg_id=message.msg_id,
            ts=int(time.time() * 1000),
            gateway=gateway.gateway_id,
            conn=conn.conn_id,
            group=message.group_id,
            body=frame.get("body"),
            emoji=frame.get("emoji"),
            on=frame.get("on"),
        )
        # The message's own topic and key: the change keeps its place behind it.
        topic = GROUP_MSG.name if message.group_id is not None else DIRECT_MSG.name
        value = change.encode()
        # Tracked before publishing: the ack may come back before publish returns.
        conn.track_send(change.cid, topic, conversation_id, value)
        try:
            gateway.services.bus.publish(topic, conversation_id, value)
        except BaseException:
            conn.untrack_send(change.cid)
            raise

    def adds(self, frame: dict[str, Any]) -> str | None:
        """The emoji the change adds to the message, if it adds one."""
        return None


class Edit(ChangeFrame):
    TYPE = "edit"
    KIND = "edit"

    class Schema(ChangeSchema):
        body = text(1, MAX_BODY, required=True)


class Delete(ChangeFrame):
    TYPE = "delete"
    KIND = "delete"
    Schema = ChangeSchema


class React(ChangeFrame):
    TYPE = "react"
    KIND = "react"

    class Schema(ChangeSchema):
        emoji = text(1, MAX_EMOJI, required=True)
        on = StrictBoolean(required=True)

    def adds(self, frame: dict[str, Any]) -> str | None:
        emoji: str | None = frame["emoji"] if frame["on"] else None
        return emoji
