"""A stand-in for a WebSocket that keeps what the gateway writes, and a
connection on it: the gateway tests' view of what a client would receive."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from imchat.gateway.connection import Connection

if TYPE_CHECKING:
    from imchat.gateway.hub import Gateway


class RecordingSocket:
    def __init__(self) -> None:
        self.frames: list[dict[str, Any]] = []

    def send(self, data: str) -> None:
        self.frames.append(json.loads(data))

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [f for f in self.frames if f["type"] == kind]


def recorded(conn: Connection, kind: str) -> list[dict[str, Any]]:
    """The frames of ``kind`` written to a connection made by ``connect``."""
    socket: RecordingSocket = conn.ws  # type: ignore[assignment]
    return socket.of_type(kind)


def connect(gateway: Gateway, user_id: str) -> Connection:
    """A live connection of ``user_id`` on ``gateway``, past its (empty) sync."""
    conn = Connection(RecordingSocket(), user_id)
    gateway.attach(conn)
    conn.finish_sync([])
    return conn
