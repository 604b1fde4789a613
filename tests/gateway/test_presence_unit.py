"""Presence's state machine on the embedded twins, step by step (no tracker
thread): what bob, a connected direct peer of alice, is told."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from imchat.config import Settings
from imchat.container import Services
from imchat.services import presence
from imchat.stores import conversations as conversation_store
from imchat.stores.models import User
from imchat.wire.batch import GatewayBatch
from imchat.wire.ids import direct_conversation_id
from tests.support.embedded import add_users, migrated_services

pytestmark = pytest.mark.unit


class Peer:
    """bob's gateway: every frame pushed to it."""

    def __init__(self, services: Services) -> None:
        self.frames: list[dict[str, object]] = []
        self._lock = threading.Lock()
        services.router.register_gateway("gw-bob")
        services.channel.listen("gw-bob", self.on_payload)
        services.router.add_route("bob", "gw-bob")

    def on_payload(self, payload: bytes) -> None:
        with self._lock:
            self.frames += [e.frame for e in GatewayBatch.decode(payload).events]

    def told(self, settle: float = 0.2) -> list[tuple[object, object]]:
        time.sleep(settle)  # the embedded channel hands over on a thread of its own
        with self._lock:
            told, self.frames = self.frames, []
        return [(f["status"], f["last_seen"]) for f in told]


@pytest.fixture
def services(settings: Settings) -> Iterator[Services]:
    services = migrated_services(settings)
    add_users(services, "alice", "bob")
    with services.db.session() as session:
        pair = (direct_conversation_id("alice", "bob"), "alice", "bob")
        conversation_store.add_direct_members(session, [pair])
    yield services
    services.close()


def test_online_once_then_offline_with_last_seen(services: Services) -> None:
    bob = Peer(services)
    services.router.register_gateway("gw-a")
    services.router.add_route("alice", "gw-a")
    presence.arrive(services, "alice")
    assert bob.told() == [("online", None)]
    # A reconnect whose departure was not worked off yet: "on" still, nothing new.
    presence.arrive(services, "alice")
    assert bob.told() == []
    services.router.remove_route("alice", "gw-a")
    gone = presence.depart(services, "alice", 1_000)
    assert gone == "gone:1000"
    assert presence.depart(services, "alice", 2_000) == gone  # another gateway: same state
    presence.settle(services, "alice", gone)
    presence.settle(services, "alice", gone)  # settled once, whoever else tries
    assert bob.told() == [("offline", 1_000)]
    with services.db.session() as session:
        assert session.get(User, "alice").last_seen_ms == 1_000  # type: ignore[union-attr]
    presence.arrive(services, "alice")
    assert bob.told() == [("online", None)]


def test_a_return_within_the_grace_period_is_no_news(services: Services) -> None:
    bob = Peer(services)
    services.router.register_gateway("gw-a")
    services.router.add_route("alice", "gw-a")
    presence.arrive(services, "alice")
    assert bob.told() == [("online", None)]
    services.router.remove_route("alice", "gw-a")
    gone = presence.depart(services, "alice", 1_000)
    assert gone is not None
    services.router.add_route("alice", "gw-a")  # the reload's new connection
    presence.arrive(services, "alice")
    presence.settle(services, "alice", gone)  # the grace period ends: back already
    assert bob.told() == []
    assert services.cache.get(presence.state_key("alice")) == presence.ON


def test_a_departure_is_none_while_a_route_remains(services: Services) -> None:
    services.router.register_gateway("gw-a")
    services.router.add_route("alice", "gw-a")
    assert presence.depart(services, "alice", 1_000) is None
