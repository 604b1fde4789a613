"""A backend that is down costs a frame an `unavailable` error, never the
connection, and nothing is acked. The backends here are real, just dead."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from imchat.backends.kafka import KafkaBus
from imchat.config import Settings
from imchat.container import Services
from imchat.gateway.connection import Connection
from imchat.gateway.dispatch import handle_frame
from imchat.gateway.hub import Gateway
from imchat.ops import migrate
from imchat.stores import users as user_store
from tests.support.recording import RecordingSocket

pytestmark = pytest.mark.unit
NOWHERE = "127.0.0.1:1"  # nothing listens on port 1


def add_user(services: Services) -> str:
    user_id = uuid.uuid4().hex
    with services.db.session() as session:
        user_store.insert(session, user_id, f"u{user_id[:10]}", "x", datetime.now(UTC))
    return user_id


def send_frame(gateway: Gateway, user_id: str, to: str) -> dict[str, Any]:
    socket = RecordingSocket()
    conn = Connection(socket, user_id)
    frame = {"type": "send", "id": "c1", "to": to, "body": "hello"}
    handle_frame(gateway, conn, json.dumps(frame))
    handle_frame(gateway, conn, '{"type": "ping"}')
    assert socket.frames[-1] == {"type": "pong"}, "the connection must stay usable"
    assert not conn.inflight, "nothing may be waiting for an ack"
    return socket.frames[0]


def test_database_down_answers_unavailable(settings: Settings) -> None:
    dead = settings.replace(
        database_url=f"mysql+pymysql://root@{NOWHERE}/none", secret_key="k" * 32
    )
    gateway = Gateway(Services(dead))
    error = send_frame(gateway, "alice", "bob")
    assert (error["type"], error["code"], error["id"]) == ("error", "unavailable", "c1")


def test_bus_down_answers_unavailable(settings: Settings) -> None:
    migrate.upgrade(settings)
    services = Services(settings)
    services.__dict__["bus"] = KafkaBus(
        settings.replace(kafka_bootstrap_servers=NOWHERE), delivery_timeout=1.0
    )
    alice, bob = add_user(services), add_user(services)
    error = send_frame(Gateway(services), alice, bob)
    assert (error["type"], error["code"], error["id"]) == ("error", "unavailable", "c1")
    assert "kafka" in error["message"]
    services.bus.close(flush_timeout=0.1)
