"""A send is tracked before it is published: an ack that comes back before
``publish`` returns leaves nothing behind for a resync to publish again."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence

import pytest

from imchat.backends.base import BackendUnavailable, BusRecord
from imchat.backends.bus_embedded import EmbeddedBus
from imchat.config import Settings
from imchat.container import Services
from imchat.gateway.connection import Connection
from imchat.gateway.dispatch import handle_frame
from imchat.gateway.hub import Gateway
from imchat.services.delivery.records import process_records
from tests.support.embedded import add_users, migrated_services
from tests.support.recording import connect

pytestmark = pytest.mark.unit


class InstantBus(EmbeddedBus):
    """A bus whose consumer is done before ``publish`` returns: the fastest ack there is."""

    def __init__(self, services: Services, path: str) -> None:
        super().__init__(path)
        self.services = services
        self.published: list[str] = []
        self.fail = False

    def publish(self, topic: str, key: str, value: bytes) -> None:
        if self.fail:
            raise BackendUnavailable("kafka", "down for the test")
        self.published.append(json.loads(value)["cid"])
        process_records(self.services, [BusRecord(topic, 0, len(self.published), key, value)])

    def publish_many(self, records: Sequence[tuple[str, str, bytes]]) -> None:
        for record in records:
            self.publish(*record)


@pytest.fixture
def services(settings: Settings) -> Iterator[Services]:
    services = migrated_services(settings)
    services.__dict__["bus"] = InstantBus(services, str(settings.data_path / "bus.sqlite3"))
    add_users(services, "alice", "bob")
    yield services
    services.close()


def send(gateway: Gateway, conn: Connection, cid: str) -> None:
    frame = {"type": "send", "id": cid, "to": "bob", "body": "hi"}
    handle_frame(gateway, conn, json.dumps(frame))


def test_an_ack_before_publish_returns_leaves_nothing_inflight(services: Services) -> None:
    gateway = Gateway(services)
    gateway.start()
    alice = connect(gateway, "alice")
    send(gateway, alice, "c1")

    acks = [f for f in alice.ws.frames if f["type"] == "ack"]  # type: ignore[attr-defined]
    assert [a["id"] for a in acks] == ["c1"]
    assert alice.inflight == {}
    gateway.resync()
    assert services.bus.published == ["c1"], "an acked send must not be published again"  # type: ignore[attr-defined]
    gateway.stop()


def test_a_send_whose_publish_fails_is_not_tracked(services: Services) -> None:
    gateway = Gateway(services)
    gateway.start()
    alice = connect(gateway, "alice")
    services.bus.fail = True  # type: ignore[attr-defined]
    send(gateway, alice, "c1")

    [error] = alice.ws.frames[-1:]  # type: ignore[attr-defined]
    assert (error["type"], error["code"], error["id"]) == ("error", "unavailable", "c1")
    assert alice.inflight == {}
    services.bus.fail = False  # type: ignore[attr-defined]
    gateway.resync()
    assert services.bus.published == []  # type: ignore[attr-defined]
    gateway.stop()


def test_an_unacked_send_is_published_again_on_resync(services: Services) -> None:
    gateway = Gateway(services)
    gateway.start()
    alice = connect(gateway, "alice")
    alice.track_send("c9", "direct_msg", "d:alice:bob", b'{"cid": "c9"}')
    services.bus.publish = lambda topic, key, value: services.bus.published.append(  # type: ignore[attr-defined, method-assign]
        json.loads(value)["cid"]
    )
    gateway.resync()
    assert services.bus.published == ["c9"]  # type: ignore[attr-defined]
    gateway.stop()
