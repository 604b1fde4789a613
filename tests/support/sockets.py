"""WebSocket clients for the live-server suites: the project's own
``ChatConnection`` and ``RawSocket``, a thin wrapper that shows every frame in
arrival order (close frames included), for the tests that must see exactly
what the server sends and nothing else."""

from __future__ import annotations

import contextlib
import json
import struct
from typing import Any

import websocket

from imchat.client import ChatConnection, Session

# How long a test waits to be sure that something does NOT arrive.
QUIET = 0.5

Frame = dict[str, Any]


class Closed(Exception):
    """The server closed the WebSocket."""

    def __init__(self, code: int | None, reason: str) -> None:
        super().__init__(f"closed by the server: {code} {reason}")
        self.code, self.reason = code, reason


class RawSocket:
    """A WebSocket that hands over every frame in arrival order."""

    def __init__(self, base_url: str, token: str | None) -> None:
        url = base_url.replace("http://", "ws://") + "/ws"
        if token is not None:
            url += f"?token={token}"
        self.ws = websocket.create_connection(url, timeout=5)

    def send(self, frame: Frame | str) -> None:
        self.ws.send(frame if isinstance(frame, str) else json.dumps(frame))

    def recv(self, timeout: float = 5.0) -> Frame:
        """The next text frame as JSON; ``Closed`` when a close frame comes instead."""
        self.ws.settimeout(timeout)
        while True:
            opcode, frame = self.ws.recv_data_frame(control_frame=True)
            if opcode == websocket.ABNF.OPCODE_CLOSE:
                data = frame.data or b""
                code = struct.unpack("!H", data[:2])[0] if len(data) >= 2 else None
                raise Closed(code, data[2:].decode(errors="replace"))
            if opcode == websocket.ABNF.OPCODE_TEXT:
                return dict(json.loads(frame.data))
            # Pings and pongs of the keepalive are no protocol frames.

    def recv_type(self, kind: str, timeout: float = 5.0) -> Frame:
        frame = self.recv(timeout)
        assert frame["type"] == kind, f"expected a {kind} frame, got {frame}"
        return frame

    def assert_quiet(self, seconds: float = QUIET) -> None:
        """Nothing arrives for ``seconds``."""
        try:
            frame = self.recv(seconds)
        except websocket.WebSocketTimeoutException:
            return
        raise AssertionError(f"unexpected frame {frame}")

    def ping(self) -> None:
        """A ping answered by the very next frame, a pong: proves the socket is usable
        and, since frames are handled in order, that everything before was handled."""
        self.send({"type": "ping"})
        assert self.recv() == {"type": "pong"}

    def close(self) -> None:
        self.ws.close(timeout=2)


class Sockets:
    """Opens connections for one test and closes them all after it."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self._chats: list[ChatConnection] = []
        self._raws: list[RawSocket] = []

    def chat(self, user: Session, synced: int | None = 0) -> ChatConnection:
        """A ChatConnection, ready for live messages once ``synced`` arrived
        (its count checked unless ``synced`` is None)."""
        conn = ChatConnection(self.base_url, user.token, timeout=5)
        self._chats.append(conn)
        count = conn.wait_synced()
        if synced is not None:
            assert count == synced
        return conn

    def raw(self, user: Session, synced: int | None = 0) -> RawSocket:
        """A RawSocket; with ``synced`` set, its first frame must be synced{count: 0}."""
        conn = RawSocket(self.base_url, user.token)
        self._raws.append(conn)
        if synced is not None:
            assert conn.recv() == {"type": "synced", "count": synced}
        return conn

    def close_all(self) -> None:
        for chat in self._chats:
            chat.close()
        for raw in self._raws:
            with contextlib.suppress(Exception):
                raw.ws.shutdown()
