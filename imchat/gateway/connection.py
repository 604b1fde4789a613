"""One open WebSocket of a user."""

from __future__ import annotations

import contextlib
import json
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Protocol

from imchat import metrics
from imchat.wire.codec import Record
from imchat.wire.frames import AckFrame, MsgFrame, SyncedFrame


class TokenBucket:
    """``rate`` frames per second on average, ``burst`` at once."""

    def __init__(self, rate: float, burst: float) -> None:
        self.rate, self.burst = rate, burst
        self.tokens = burst
        self.stamp = time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


@dataclass(frozen=True)
class InflightSend:
    """A send on the bus whose ack has not come back: published again on resync."""

    topic: str
    key: str
    value: bytes
    published_at: float


class Socket(Protocol):
    def send(self, data: str) -> None: ...


class Connection:
    """Serializes writes (several greenlets push to one socket) and holds live
    messages back while the pending ones are pushed on connect, so that each
    conversation arrives in seq order and nothing twice.

    A message at or below the last seq this connection got in its
    conversation is dropped: a batch replayed by the consumer after a crash,
    or a message both pending and pushed live, reaches the socket once.
    """

    def __init__(
        self,
        ws: Socket,
        user_id: str,
        limit: TokenBucket | None = None,
        session_id: str | None = None,
    ) -> None:
        self.ws = ws
        self.user_id = user_id
        self.session_id = session_id
        self.limit = limit
        self.conn_id = uuid.uuid4().hex
        self._lock = threading.Lock()
        self._syncing = True
        self._held: list[tuple[MsgFrame, str | None]] = []
        self._last_seq: dict[str, int] = {}
        # Sends published but not acked yet, by client id.
        self.inflight: dict[str, InflightSend] = {}
        self.closed = False

    def send_frame(self, frame: Record, text: str | None = None) -> None:
        """Write a frame; ``text`` is its JSON when the caller encoded it already
        (a group message is encoded once for all its recipients' sockets)."""
        self.send_text(text if text is not None else json.dumps(frame.to_dict()))

    def send_text(self, text: str) -> None:
        """Write one frame's JSON as it is."""
        if self.closed:
            return
        with self._lock:
            try:
                self.ws.send(text)
            except Exception:
                self.closed = True

    def end(self, code: int, reason: str) -> None:
        """Close the socket from the server's side (the reader then ends)."""
        close = getattr(self.ws, "close", None)
        if close is None or self.closed:
            return
        self.closed = True
        with self._lock, contextlib.suppress(Exception):  # already gone
            close(reason=code, message=reason)

    def track_send(self, cid: str, topic: str, key: str, value: bytes) -> None:
        self.inflight[cid] = InflightSend(topic, key, value, time.monotonic())

    def untrack_send(self, cid: str) -> None:
        """The send was not accepted (its publish failed): nothing to publish again."""
        self.inflight.pop(cid, None)

    def deliver_ack(self, frame: AckFrame) -> None:
        sent = self.inflight.pop(frame.id, None)
        self.send_frame(frame)
        if sent is not None:
            metrics.ACK_LATENCY.observe(time.monotonic() - sent.published_at)

    def push_message(self, frame: MsgFrame, text: str | None = None) -> None:
        """A live ``msg``: sent now, or held until the pending ones are out."""
        with self._lock:
            if self._syncing:
                self._held.append((frame, text))
                return
        self._send_message(frame, "live", text)

    def _send_message(self, frame: MsgFrame, via: str, text: str | None = None) -> bool:
        conversation_id, seq = frame.conversation_id, frame.seq
        with self._lock:
            if seq <= self._last_seq.get(conversation_id, 0):
                return False
            self._last_seq[conversation_id] = seq
        self.send_frame(frame, text)
        metrics.MESSAGES_DELIVERED.labels(via).inc()
        if via == "live":
            metrics.DELIVERY_LATENCY.observe(max(time.time() - frame.ts / 1000, 0))
        return True

    def finish_sync(self, pending: list[MsgFrame]) -> None:
        """Push the pending messages, ``synced``, then what arrived live meanwhile."""
        count = sum(self._send_message(frame, "pending") for frame in pending)
        self.send_frame(SyncedFrame(count))
        while True:
            with self._lock:
                held, self._held = self._held, []
                if not held:
                    self._syncing = False
                    return
            for frame, text in held:
                self._send_message(frame, "live", text)
