"""``delivered`` and ``read``: the user has a conversation up to ``seq``, or has read it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from imchat.gateway.frames.base import ClientFrame, FrameSchema
from imchat.wire.fields import seq_field, text

if TYPE_CHECKING:
    from imchat.gateway.connection import Connection
    from imchat.gateway.hub import Gateway


class MarkSchema(FrameSchema):
    conversation_id = text(1, 80, required=True)
    seq = seq_field(required=True)


class Delivered(ClientFrame):
    TYPE = "delivered"
    Schema = MarkSchema

    def handle(self, gateway: Gateway, conn: Connection, frame: dict[str, Any]) -> None:
        # Scoped to the connection's own user: nobody can move another's marks.
        conversation_id, seq = frame["conversation_id"], frame["seq"]
        gateway.confirmations.add(conn.user_id, conversation_id, seq)
        gateway.receipts.note(conn.user_id, conversation_id, seq, 0, conn.conn_id)


class Read(ClientFrame):
    """Read up to ``seq`` (never moves back); implies delivered up to it."""

    TYPE = "read"
    Schema = MarkSchema

    def handle(self, gateway: Gateway, conn: Connection, frame: dict[str, Any]) -> None:
        conversation_id, seq = frame["conversation_id"], frame["seq"]
        gateway.confirmations.add(conn.user_id, conversation_id, seq, seq)
        gateway.receipts.note(conn.user_id, conversation_id, seq, seq, conn.conn_id)
