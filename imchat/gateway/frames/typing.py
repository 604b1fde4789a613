"""``typing``: the user is typing in a conversation; relayed to the other participants.

Typing costs next to nothing: never stored, never on the bus; at most one
relayed per 2 s (``Gateway.typing_throttle``) per user and conversation (this gateway's
throttle: the rest are dropped), straight to the gateways of the other
participants' connections through the router and the gateway channel. A
frame of someone who is no participant, and whoever the typer blocks or is
blocked by, get nothing: silently, so that nothing is learnt from an answer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from imchat.gateway.frames.base import ClientFrame, FrameSchema
from imchat.services import blocks, groups
from imchat.services.delivery.outbox import Outbox
from imchat.wire.fields import text
from imchat.wire.frames import TypingFrame
from imchat.wire.ids import direct_conversation_id

if TYPE_CHECKING:
    from imchat.container import Services
    from imchat.gateway.connection import Connection
    from imchat.gateway.hub import Gateway


class Typing(ClientFrame):
    TYPE = "typing"

    class Schema(FrameSchema):
        conversation_id = text(1, 80, required=True)

    def handle(self, gateway: Gateway, conn: Connection, frame: dict[str, Any]) -> None:
        conversation_id = frame["conversation_id"]
        if not gateway.typing_throttle.allow((conn.user_id, conversation_id)):
            return
        others = others_in(gateway.services, conn.user_id, conversation_id)
        if not others:
            return
        shunned = blocks.shunned(gateway.services, conn.user_id)
        audience = [u for u in others if u not in shunned]
        if audience:
            outbox = Outbox(gateway.services)
            outbox.push_frame(TypingFrame(conversation_id, conn.user_id).to_dict(), audience)
            outbox.send()


def others_in(services: Services, user_id: str, conversation_id: str) -> list[str]:
    """The other participants of the conversation, or none when the user is not one."""
    kind, _, rest = conversation_id.partition(":")
    if kind == "d":
        low, _, high = rest.partition(":")
        if user_id not in (low, high) or direct_conversation_id(low, high) != conversation_id:
            return []
        return [u for u in dict.fromkeys((low, high)) if u != user_id]
    if kind == "g":
        members = groups.member_ids(services, rest) or []
        if user_id not in members:
            return []
        return [u for u in members if u != user_id]
    return []
