"""The transactional outbox of membership events, on the embedded twins: a
change is committed with its events; when the publish after the commit fails,
or the process dies right there, the consumer's relay publishes them later,
in order."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator

import pytest

from imchat.backends.base import BackendUnavailable, BusConsumer
from imchat.config import Settings
from imchat.container import Services
from imchat.services import event_relay, groups
from imchat.stores.models import OutboxEvent
from imchat.wire.bus import MembershipChange
from imchat.wire.topics import MEMBERSHIP_CHANGE
from tests.support.embedded import add_users, migrated_services

pytestmark = pytest.mark.unit


class Killed(BaseException):
    """What the process dying between the commit and the publish looks like
    from inside: nothing after that point runs."""


@pytest.fixture
def services(settings: Settings) -> Iterator[Services]:
    services = migrated_services(settings)
    add_users(services, "alice", "bob", "carol")
    yield services
    services.close()


@pytest.fixture
def events(services: Services) -> Iterator[BusConsumer]:
    consumer = services.bus.subscribe([MEMBERSHIP_CHANGE.name], f"test-{uuid.uuid4().hex}")
    yield consumer
    consumer.close()


def published(consumer: BusConsumer) -> list[tuple[str, str]]:
    found = []
    while records := consumer.poll_batch(100, timeout=0.1):
        for record in records:
            change = MembershipChange.decode(record.value)
            found.append((change.event, change.user_id))
    return found


def waiting(services: Services) -> int:
    with services.db.session() as session:
        return session.query(OutboxEvent).count()


def relay_now(services: Services, monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setattr(event_relay, "RELAY_AFTER_SECONDS", -1.0)
    return event_relay.relay(services)


def test_events_are_published_after_the_commit_and_leave_no_row(
    services: Services, events: BusConsumer
) -> None:
    group = groups.create_group(services, "alice", "team", ["bob"])
    assert published(events) == [("member_added", "alice"), ("member_added", "bob")]
    assert waiting(services) == 0
    groups.remove_member(services, "alice", group.group_id, "bob")
    assert published(events) == [("member_removed", "bob")]


@pytest.mark.parametrize("failure", [BackendUnavailable("bus", "down"), Killed()])
def test_a_failed_or_killed_publish_is_relayed_later(
    services: Services,
    events: BusConsumer,
    monkeypatch: pytest.MonkeyPatch,
    failure: BaseException,
) -> None:
    real = services.bus.publish_many

    def broken(records: object) -> None:
        raise failure

    monkeypatch.setattr(services.bus, "publish_many", broken)
    with contextlib.suppress(Killed):  # the "process" died after the commit
        groups.create_group(services, "alice", "team", ["bob"])
    assert groups.groups_of(services, "bob"), "the change was committed"
    assert published(events) == [] and waiting(services) == 2
    monkeypatch.setattr(services.bus, "publish_many", real)
    assert event_relay.relay(services) == 0  # too fresh: the commit's own publish may come
    assert relay_now(services, monkeypatch) == 2
    assert published(events) == [("member_added", "alice"), ("member_added", "bob")]
    assert waiting(services) == 0
    assert relay_now(services, monkeypatch) == 0  # once


def test_a_later_change_publishes_the_earlier_ones_first(
    services: Services, events: BusConsumer, monkeypatch: pytest.MonkeyPatch
) -> None:
    group = groups.create_group(services, "alice", "team", [])
    assert published(events) == [("member_added", "alice")]
    real = services.bus.publish_many

    def down(records: object) -> None:
        raise BackendUnavailable("bus", "down")

    monkeypatch.setattr(services.bus, "publish_many", down)
    groups.add_member(services, "alice", group.group_id, "bob")
    monkeypatch.setattr(services.bus, "publish_many", real)
    groups.add_member(services, "alice", group.group_id, "carol")
    # bob's event waited; carol's publish takes it along, in order.
    assert published(events) == [("member_added", "bob"), ("member_added", "carol")]
    assert waiting(services) == 0
