"""``ping``: the client's keepalive, answered with ``pong``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from imchat.gateway.frames.base import ClientFrame
from imchat.wire.frames import PongFrame

if TYPE_CHECKING:
    from imchat.gateway.connection import Connection
    from imchat.gateway.hub import Gateway


class Ping(ClientFrame):
    TYPE = "ping"

    def handle(self, gateway: Gateway, conn: Connection, frame: dict[str, Any]) -> None:
        conn.send_frame(PongFrame())
