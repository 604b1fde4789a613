"""The gateway of this process: its connections, its routes, its channel."""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import uuid
from collections import defaultdict
from collections.abc import Iterable
from typing import TYPE_CHECKING

from imchat import metrics
from imchat.gateway.confirmations import ConfirmationBatcher
from imchat.gateway.connection import Connection
from imchat.gateway.presence import PresenceTracker
from imchat.gateway.receipts import ReceiptCoalescer
from imchat.gateway.sessions import SESSION_ENDED, SessionSweeper
from imchat.gateway.throttle import Throttle
from imchat.services import users
from imchat.services.pending import load_pending
from imchat.wire.batch import GatewayBatch
from imchat.wire.codec import WireError

if TYPE_CHECKING:
    from imchat.container import Services

log = logging.getLogger("imchat.gateway")
KNOWN_USERS_MAX = 100_000
TYPING_WINDOW_SECONDS = 2.0


def new_gateway_id(configured: str) -> str:
    """Unique per process: a gunicorn worker is a gateway of its own."""
    base = configured or socket.gethostname()
    return f"{base}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class Gateway:
    def __init__(self, services: Services) -> None:
        self.services = services
        self.gateway_id = new_gateway_id(services.settings.gateway_id)
        self._lock = threading.Lock()
        self._by_user: defaultdict[str, set[Connection]] = defaultdict(set)
        self._by_id: dict[str, Connection] = {}
        self.confirmations = ConfirmationBatcher(services)
        self.receipts = ReceiptCoalescer(services, self.connected_elsewhere)
        self.presence = PresenceTracker(services)
        self.sessions = SessionSweeper(services, self.open_sessions, self.end_sessions)
        # One relayed typing frame per user and conversation per window.
        self.typing_throttle = Throttle(TYPING_WINDOW_SECONDS)
        # Users seen to exist, so that a send costs no round trip to check its
        # recipient: accounts are never deleted. Cleared when it grows too big.
        self.known_users: set[str] = set()
        self.started = False
        self._starting = threading.Lock()

    def ensure_started(self) -> None:
        """Start once, whichever request comes first."""
        if not self.started:
            with self._starting:
                if not self.started:
                    self.start()

    def start(self) -> None:
        self.services.router.register_gateway(self.gateway_id)
        self.services.channel.listen(self.gateway_id, self.on_payload)
        self.confirmations.start()
        self.receipts.start()
        self.presence.start()
        self.sessions.start()
        self.started = True
        log.info("gateway started", extra={"gateway_id": self.gateway_id})

    def stop(self) -> None:
        if self.started:
            self.confirmations.stop()
            self.receipts.stop()
            self.presence.stop()
            self.sessions.stop()
            self.services.channel.stop_listening(self.gateway_id)
            self.services.router.unregister_gateway(self.gateway_id)
            self.started = False

    def attach(self, conn: Connection) -> None:
        metrics.CONNECTIONS.inc()
        with self._lock:
            first = not self._by_user[conn.user_id]
            self._by_user[conn.user_id].add(conn)
            self._by_id[conn.conn_id] = conn
        if first:
            self.services.router.add_route(conn.user_id, self.gateway_id)
            self.presence.arrived(conn.user_id)

    def detach(self, conn: Connection) -> None:
        metrics.CONNECTIONS.dec()
        with self._lock:
            conns = self._by_user.get(conn.user_id, set())
            conns.discard(conn)
            self._by_id.pop(conn.conn_id, None)
            last = not conns
            if last:
                self._by_user.pop(conn.user_id, None)
        if last:
            try:
                self.services.router.remove_route(conn.user_id, self.gateway_id)
            except Exception:
                log.warning("route of %s not removed; its lease will expire", conn.user_id)

    def connection_count(self, user_id: str | None = None) -> int:
        """Open connections on this gateway: all, or those of one user."""
        with self._lock:
            if user_id is None:
                return len(self._by_id)
            return len(self._by_user.get(user_id, ()))

    def connected_elsewhere(self, user_id: str, conn_id: str | None) -> bool:
        """Whether the user has a connection other than ``conn_id``, here or on
        another gateway (the router's local copy: no round trip)."""
        with self._lock:
            local = [c for c in self._by_user.get(user_id, ()) if c.conn_id != conn_id]
        if local:
            return True
        return bool(self.services.router.gateways_for(user_id) - {self.gateway_id})

    def on_payload(self, payload: bytes) -> None:
        """A batch from the bus consumer: acks to senders, messages and events to users."""
        try:
            batch = GatewayBatch.decode(payload)
        except WireError as exc:
            log.error("undecodable gateway payload dropped: %s", exc)
            return
        if batch.resync:
            threading.Thread(target=self.resync, daemon=True).start()
            return
        if batch.ends:
            self.end_sessions(batch.ends)
        for ack in batch.acks:
            conn = self._by_id.get(ack.conn_id)
            if conn is not None:
                conn.deliver_ack(ack.frame)
        tracing = log.isEnabledFor(logging.DEBUG)
        for push in batch.msgs:
            text = json.dumps(push.frame.to_dict())  # once, for every local recipient socket
            for conn in self._local(push.users, push.exclude_conn):
                conn.push_message(push.frame, text)
                if tracing:
                    trace = {"msg_id": push.frame.msg_id, "user_id": conn.user_id}
                    log.debug("delivered to a socket", extra=trace)
        for event in batch.events:
            text = json.dumps(event.frame)
            for conn in self._local(event.users, event.exclude_conn):
                conn.send_text(text)

    def open_sessions(self) -> set[str]:
        with self._lock:
            return {c.session_id for c in self._by_id.values() if c.session_id}

    def end_sessions(self, session_ids: Iterable[str]) -> None:
        """Close every local connection of these sessions with 4401."""
        ended = set(session_ids)
        with self._lock:
            doomed = [c for c in self._by_id.values() if c.session_id in ended]
        for conn in doomed:
            conn.end(SESSION_ENDED, "session ended")

    def user_exists(self, user_id: str) -> bool:
        """Remembered per process once seen, so that a send costs no round trip
        to check its recipient: accounts are never deleted."""
        if user_id in self.known_users:
            return True
        if not users.exists(self.services, user_id):
            return False
        if len(self.known_users) >= KNOWN_USERS_MAX:
            self.known_users.clear()
        self.known_users.add(user_id)
        return True

    def resync(self) -> None:
        """Catch up after the channel was lost: what it carried meanwhile is gone.

        Unacked sends are published again (the consumer answers a replayed
        envelope with its original seq), and every connection gets its
        pending messages above what it already has.
        """
        with self._lock:
            connections = list(self._by_id.values())
        for conn in connections:
            try:
                for sent in list(conn.inflight.values()):
                    self.services.bus.publish(sent.topic, sent.key, sent.value)
                for frame in load_pending(self.services, conn.user_id):
                    conn.push_message(frame)
            except Exception:
                log.exception("resync of a connection of %s failed", conn.user_id)
        self.sessions.sweep()  # an end of session may have been lost with the channel

    def _local(self, user_ids: list[str], exclude: str | None) -> list[Connection]:
        with self._lock:
            return [c for u in user_ids for c in self._by_user.get(u, ()) if c.conn_id != exclude]
