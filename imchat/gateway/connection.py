"""One open WebSocket of a user."""

from __future__ import annotations

import json
import threading
import uuid
from typing import Any, Protocol


class Socket(Protocol):
    def send(self, data: str) -> None: ...


class Connection:
    """Serializes writes (several greenlets push to one socket) and holds live
    messages back while the pending ones are pushed on connect, so that each
    conversation arrives in seq order and nothing twice."""

    def __init__(self, ws: Socket, user_id: str) -> None:
        self.ws = ws
        self.user_id = user_id
        self.conn_id = uuid.uuid4().hex
        self._lock = threading.Lock()
        self._syncing = True
        self._held: list[dict[str, Any]] = []
        self._synced_ids: set[str] = set()
        self.closed = False

    def send_frame(self, frame: dict[str, Any]) -> None:
        if self.closed:
            return
        with self._lock:
            try:
                self.ws.send(json.dumps(frame))
            except Exception:
                self.closed = True

    def push_message(self, frame: dict[str, Any]) -> None:
        """A live ``msg``: sent now, or held until the pending ones are out."""
        with self._lock:
            if self._syncing:
                self._held.append(frame)
                return
        self.send_frame(frame)

    def finish_sync(self, pending: list[dict[str, Any]]) -> None:
        """Push the pending messages, ``synced``, then what arrived live meanwhile."""
        for frame in pending:
            self.send_frame(frame)
        self.send_frame({"type": "synced", "count": len(pending)})
        sent = {f["msg_id"] for f in pending}
        while True:
            with self._lock:
                held, self._held = self._held, []
                if not held:
                    self._syncing = False
                    return
            for frame in held:
                if frame["msg_id"] not in sent:
                    self.send_frame(frame)
