"""``delivered``: the client has every message of a conversation up to ``seq``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from imchat.gateway.frames.base import ClientFrame, FrameSchema
from imchat.wire.fields import seq_field, text

if TYPE_CHECKING:
    from imchat.gateway.connection import Connection
    from imchat.gateway.hub import Gateway


class Delivered(ClientFrame):
    TYPE = "delivered"

    class Schema(FrameSchema):
        conversation_id = text(1, 80, required=True)
        seq = seq_field(required=True)

    def handle(self, gateway: Gateway, conn: Connection, frame: dict[str, Any]) -> None:
        # Scoped to the connection's own user: nobody can trim another's pending messages.
        gateway.confirmations.add(conn.user_id, frame["conversation_id"], frame["seq"])
