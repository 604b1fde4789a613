"""The gateway of this process: its connections, its routes, its channel."""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import uuid
from collections import defaultdict
from typing import Any

from imchat import metrics
from imchat.container import Services
from imchat.gateway.confirmations import ConfirmationBatcher
from imchat.gateway.connection import Connection
from imchat.services.pending import load_pending

log = logging.getLogger("imchat.gateway")


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
        # Users seen to exist, so that a send costs no round trip to check its
        # recipient: accounts are never deleted. Cleared when it grows too big.
        self.known_users: set[str] = set()
        self.started = False

    def start(self) -> None:
        self.services.router.register_gateway(self.gateway_id)
        self.services.channel.listen(self.gateway_id, self.on_payload)
        self.confirmations.start()
        self.started = True
        log.info("gateway started", extra={"gateway_id": self.gateway_id})

    def stop(self) -> None:
        if self.started:
            self.confirmations.stop()
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

    def on_payload(self, payload: bytes) -> None:
        """A batch from the bus consumer: acks to senders, messages and events to users."""
        try:
            batch: dict[str, list[Any]] = json.loads(payload)
        except ValueError:
            log.error("undecodable gateway payload dropped")
            return
        if batch.get("resync"):
            threading.Thread(target=self.resync, daemon=True).start()
            return
        for conn_id, frame in batch.get("acks", []):
            conn = self._by_id.get(conn_id)
            if conn is not None:
                conn.deliver_ack(frame)
        tracing = log.isEnabledFor(logging.DEBUG)
        for frame, users, exclude in batch.get("msgs", []):
            text = json.dumps(frame)  # once, for every local recipient socket
            for conn in self._local(users, exclude):
                conn.push_message(frame, text)
                if tracing:
                    trace = {"msg_id": frame["msg_id"], "user_id": conn.user_id}
                    log.debug("delivered to a socket", extra=trace)
        for frame, users, _ in batch.get("events", []):
            for conn in self._local(users, None):
                conn.send_frame(frame)

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
                for topic, key, value, _ in list(conn.inflight.values()):
                    self.services.bus.publish(topic, key, value)
                for frame in load_pending(self.services, conn.user_id):
                    conn.push_message(frame)
            except Exception:
                log.exception("resync of a connection of %s failed", conn.user_id)

    def _local(self, users: list[str], exclude: str | None) -> list[Connection]:
        with self._lock:
            return [c for u in users for c in self._by_user.get(u, ()) if c.conn_id != exclude]
