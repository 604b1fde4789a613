"""The MessageBus contract, run against the embedded twin and the Kafka adapter.

The Kafka half talks to the real broker of ``kafka_bootstrap`` (tansu in
tests, Apache Kafka in production); every test uses its own topics and
consumer groups, so tests never see each other's records.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from imchat.backends.base import BackendUnavailable, BusConsumer, BusRecord, MessageBus
from imchat.backends.bus_embedded import EmbeddedBus
from imchat.backends.kafka import KafkaBus
from imchat.config import Settings
from imchat.wire.topics import TOPICS, TopicSpec

HOUR_MS = 3_600_000
# Long enough for a Kafka consumer to join its group (~3 s on tansu) and fetch.
RECEIVE_TIMEOUT = 20.0

Subscribe = Callable[[str, list[str]], BusConsumer]


def kafka_settings(settings: Settings, bootstrap: str) -> Settings:
    return settings.replace(
        kafka_bootstrap_servers=bootstrap, kafka_replication_factor=1, kafka_min_insync_replicas=1
    )


@pytest.fixture(
    params=[
        pytest.param("embedded", marks=pytest.mark.unit),
        pytest.param("kafka", marks=pytest.mark.integration),
    ]
)
def bus(request: pytest.FixtureRequest, tmp_path: Path, settings: Settings) -> Iterator[MessageBus]:
    if request.param == "embedded":
        message_bus: MessageBus = EmbeddedBus(tmp_path / "bus.sqlite3")
    else:
        bootstrap = request.getfixturevalue("kafka_bootstrap")
        message_bus = KafkaBus(kafka_settings(settings, bootstrap))
    yield message_bus
    message_bus.close()


@pytest.fixture
def spec(unique: str) -> TopicSpec:
    return TopicSpec(f"t_{unique}", 4, HOUR_MS, "test")


@pytest.fixture
def topic(bus: MessageBus, spec: TopicSpec) -> str:
    bus.ensure_topics([spec], 1, 1)
    return spec.name


@pytest.fixture
def subscribe(bus: MessageBus, unique: str) -> Iterator[Subscribe]:
    """Open consumers in test-unique groups; every one is closed after the test."""
    consumers: list[BusConsumer] = []

    def open_consumer(group: str, topics: list[str]) -> BusConsumer:
        consumer = bus.subscribe(topics, f"g_{unique}_{group}")
        consumers.append(consumer)
        return consumer

    yield open_consumer
    for consumer in consumers:
        consumer.close()


def receive(consumer: BusConsumer, count: int, timeout: float = RECEIVE_TIMEOUT) -> list[BusRecord]:
    """Exactly ``count`` records (never more), or fewer once ``timeout`` has passed."""
    records: list[BusRecord] = []
    deadline = time.monotonic() + timeout
    while len(records) < count and time.monotonic() < deadline:
        records += consumer.poll_batch(count - len(records), 0.5)
    return records


def values(records: list[BusRecord]) -> list[bytes]:
    return [r.value for r in records]


# ----------------------------------------------------------------- topics
def test_ensure_topics_creates_then_is_idempotent(bus: MessageBus, spec: TopicSpec) -> None:
    assert bus.ensure_topics([spec], 1, 1) == [spec.name]
    assert bus.ensure_topics([spec], 1, 1) == []
    other = TopicSpec(spec.name + "_b", 2, HOUR_MS, "test")
    assert bus.ensure_topics([spec, other], 1, 1) == [other.name]


def test_topic_partitions_reports_partition_counts(bus: MessageBus, spec: TopicSpec) -> None:
    other = TopicSpec(spec.name + "_b", 2, HOUR_MS, "test")
    bus.ensure_topics([spec, other], 1, 1)
    partitions = bus.topic_partitions()
    assert partitions[spec.name] == 4
    assert partitions[other.name] == 2


# ----------------------------------------------------------------- records
def test_new_group_receives_published_record(
    bus: MessageBus, topic: str, subscribe: Subscribe
) -> None:
    bus.publish(topic, "conv:alice:bob", b'{"body": "hi \xc3\xa9"}\x00')
    [record] = receive(subscribe("a", [topic]), 1)
    assert (record.topic, record.key, record.value) == (
        topic,
        "conv:alice:bob",
        b'{"body": "hi \xc3\xa9"}\x00',
    )
    assert 0 <= record.partition < 4
    assert record.offset >= 0


def test_lag_counts_what_is_not_returned_yet(
    bus: MessageBus, topic: str, subscribe: Subscribe
) -> None:
    bus.publish_many([(topic, "conv:lag", f"{i}".encode()) for i in range(5)])
    consumer = subscribe("a", [topic])
    first = receive(consumer, 1)
    assert consumer.lag() == 5 - len(first)
    receive(consumer, 5 - len(first))
    assert consumer.lag() == 0


def test_records_of_one_key_arrive_in_publish_order(
    bus: MessageBus, topic: str, subscribe: Subscribe
) -> None:
    keys = ["conv:1", "conv:2", "conv:3"]
    for i in range(200):
        bus.publish(topic, keys[i % 3], f"{i}".encode())
    records = receive(subscribe("a", [topic]), 200)
    assert len(records) == 200
    for key in keys:
        sent = [f"{i}".encode() for i in range(200) if keys[i % 3] == key]
        assert [r.value for r in records if r.key == key] == sent


def test_publish_many_delivers_every_record_to_its_topic(
    bus: MessageBus, spec: TopicSpec, subscribe: Subscribe
) -> None:
    second = TopicSpec(spec.name + "_b", 2, HOUR_MS, "test")
    bus.ensure_topics([spec, second], 1, 1)
    batch = [
        (spec.name if i % 2 else second.name, f"user{i % 5}", f"m{i}".encode()) for i in range(60)
    ]
    bus.publish_many(batch)
    records = receive(subscribe("a", [spec.name, second.name]), 60)
    assert sorted((r.topic, r.key, r.value) for r in records) == sorted(batch)
    # In order per key within the batch too.
    for topic, key in {(t, k) for t, k, _ in batch}:
        sent = [v for t, k, v in batch if (t, k) == (topic, key)]
        assert [r.value for r in records if (r.topic, r.key) == (topic, key)] == sent


def test_publish_many_of_nothing_returns(bus: MessageBus, topic: str) -> None:
    bus.publish_many([])


# ----------------------------------------------------------------- groups
def test_committed_offsets_survive_the_consumer_and_uncommitted_come_back(
    bus: MessageBus, topic: str, subscribe: Subscribe
) -> None:
    # One key: one partition, so "after the committed ones" has a single order.
    bus.publish_many([(topic, "conv:x", f"v{i}".encode()) for i in range(10)])
    first = subscribe("a", [topic])
    assert values(receive(first, 4)) == [b"v0", b"v1", b"v2", b"v3"]
    first.commit()
    # Handed out but never committed: processed by nobody as far as the bus knows.
    assert values(receive(first, 3)) == [b"v4", b"v5", b"v6"]
    first.close()

    second = subscribe("a", [topic])
    assert values(receive(second, 6)) == [f"v{i}".encode() for i in range(4, 10)]
    assert second.poll_batch(10, 0.5) == []


def test_commit_with_nothing_returned_commits_nothing(
    bus: MessageBus, topic: str, subscribe: Subscribe
) -> None:
    bus.publish(topic, "k", b"only")
    first = subscribe("a", [topic])
    first.commit()
    first.close()
    assert values(receive(subscribe("a", [topic]), 1)) == [b"only"]


def test_two_groups_each_get_every_record(
    bus: MessageBus, topic: str, subscribe: Subscribe
) -> None:
    # Both consumers subscribe first so that their group joins overlap.
    fanout, offline = subscribe("fanout", [topic]), subscribe("offline", [topic])
    batch = [(topic, f"user{i % 4}", f"m{i}".encode()) for i in range(20)]
    bus.publish_many(batch)
    expected = sorted(v for _, _, v in batch)
    assert sorted(values(receive(fanout, 20))) == expected
    assert sorted(values(receive(offline, 20))) == expected


def test_poll_with_nothing_returns_empty_within_about_the_timeout(
    topic: str, subscribe: Subscribe
) -> None:
    consumer = subscribe("a", [topic])
    started = time.monotonic()
    assert consumer.poll_batch(10, 1.0) == []
    assert 0.5 <= time.monotonic() - started < 2.5


# ------------------------------------------------------------ Kafka only
DOWN = "127.0.0.1:1"  # nothing listens on port 1


@pytest.mark.integration
def test_kafka_ping_answers_when_the_broker_is_up(settings: Settings, kafka_bootstrap: str) -> None:
    bus = KafkaBus(kafka_settings(settings, kafka_bootstrap))
    try:
        bus.ping(timeout=2.0)
    finally:
        bus.close()


@pytest.mark.integration
def test_kafka_ping_raises_when_no_broker_listens(settings: Settings) -> None:
    bus = KafkaBus(kafka_settings(settings, DOWN))
    started = time.monotonic()
    with pytest.raises(BackendUnavailable) as caught:
        bus.ping(timeout=1.0)
    assert caught.value.backend == "kafka"
    assert time.monotonic() - started < 4.0
    bus.close()


@pytest.mark.integration
def test_kafka_publish_raises_when_no_broker_listens(settings: Settings, unique: str) -> None:
    bus = KafkaBus(kafka_settings(settings, DOWN), delivery_timeout=1.0)
    started = time.monotonic()
    with pytest.raises(BackendUnavailable) as caught:
        bus.publish(f"t_{unique}", "k", b"lost")
    assert caught.value.backend == "kafka"
    assert time.monotonic() - started < 4.0
    with pytest.raises(BackendUnavailable):
        bus.publish_many([(f"t_{unique}", "k", b"lost too")])
    bus.close(flush_timeout=0.5)


@pytest.mark.integration
def test_kafka_poll_raises_when_no_broker_listens(settings: Settings, unique: str) -> None:
    bus = KafkaBus(kafka_settings(settings, DOWN))
    consumer = bus.subscribe([f"t_{unique}"], f"g_{unique}")
    started = time.monotonic()
    with pytest.raises(BackendUnavailable) as caught:
        consumer.poll_batch(10, 1.0)
    assert caught.value.backend == "kafka"
    assert time.monotonic() - started < 2.5
    consumer.close()
    bus.close()


@pytest.mark.integration
def test_ensure_topics_creates_imchats_topics_once(
    settings: Settings, kafka_bootstrap: str
) -> None:
    # The production topic names on the shared test broker: another run may
    # have created them already, so only the second call's answer is certain.
    configured = kafka_settings(settings, kafka_bootstrap)
    replication, min_isr = configured.kafka_replication_factor, configured.kafka_min_insync_replicas
    bus = KafkaBus(configured)
    try:
        created = bus.ensure_topics(TOPICS, replication, min_isr)
        assert set(created) <= {spec.name for spec in TOPICS}
        assert bus.ensure_topics(TOPICS, replication, min_isr) == []
        partitions = bus.topic_partitions()
    finally:
        bus.close()
    for spec in TOPICS:
        assert partitions[spec.name] == spec.partitions


GEVENT_CLIENT = textwrap.dedent(
    """
    import gevent.monkey

    gevent.monkey.patch_all()

    import json, sys, time
    import gevent
    from imchat.backends.kafka import KafkaBus
    from imchat.config import load_settings
    from imchat.wire.topics import TopicSpec

    bootstrap, topic, group = sys.argv[1:4]
    settings = load_settings(environ={}, overrides={"kafka_bootstrap_servers": bootstrap})
    bus = KafkaBus(settings)
    longest_stall = 0.0
    received = []

    def heartbeat():
        # How long the hub was kept from running other greenlets: librdkafka's
        # blocking calls must wait in OS threads, never in the hub.
        global longest_stall
        while True:
            before = time.perf_counter()
            gevent.sleep(0.005)
            longest_stall = max(longest_stall, time.perf_counter() - before - 0.005)

    def sender(user):
        for n in range(10):
            bus.publish(topic, f"user{user}", f"{user}:{n}".encode())

    def receiver(consumer):
        deadline = time.monotonic() + 30
        while len(received) < 500 and time.monotonic() < deadline:
            received.extend(consumer.poll_batch(500 - len(received), 0.5))
        consumer.commit()

    beat = gevent.spawn(heartbeat)
    bus.ping(timeout=2.0)
    created = bus.ensure_topics([TopicSpec(topic, 4, 3600000, "test")], 1, 1)
    consumer = bus.subscribe([topic], group)
    reader = gevent.spawn(receiver, consumer)
    started = time.perf_counter()
    gevent.joinall([gevent.spawn(sender, u) for u in range(50)], raise_error=True)
    elapsed = time.perf_counter() - started
    reader.get(timeout=40)
    consumer.close()
    beat.kill()
    bus.close()
    print(json.dumps({
        "created": created,
        "publish_seconds": round(elapsed, 3),
        "consumed": len({r.value for r in received}),
        "longest_stall": round(longest_stall, 4),
    }))
    """
)


@pytest.mark.integration
def test_kafka_under_gevent_50_greenlets_publish_500_records(
    settings: Settings, kafka_bootstrap: str, spec: TopicSpec, unique: str
) -> None:
    """The gunicorn -k gevent setting, in a monkey-patched child process."""
    bus = KafkaBus(kafka_settings(settings, kafka_bootstrap))
    bus.ensure_topics([spec], 1, 1)
    consumer = bus.subscribe([spec.name], f"g_{unique}_here")
    try:
        consumer.poll_batch(1, 0.1)  # start joining the group while the child runs
        done = subprocess.run(
            [sys.executable, "-c", GEVENT_CLIENT, kafka_bootstrap, spec.name, f"g_{unique}_child"],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=Path(__file__).resolve().parents[2],
        )
        assert done.returncode == 0, done.stderr
        report = json.loads(done.stdout.strip().splitlines()[-1])
        print(f"gevent child: {report}")
        assert report["created"] == []
        assert report["consumed"] == 500
        assert report["longest_stall"] < 0.5, report

        records = receive(consumer, 500, timeout=30.0)
        assert len(records) == 500
        for user in range(50):
            mine = [r.value for r in records if r.key == f"user{user}"]
            assert mine == [f"{user}:{n}".encode() for n in range(10)]
    finally:
        consumer.close()
        bus.close()


@pytest.mark.integration
def test_topic_prefixes_keep_deployments_apart(
    settings: Settings, kafka_bootstrap: str, spec: TopicSpec, unique: str
) -> None:
    """Two deployments on one cluster, each with its own prefix: same topic
    names in code, different topics on the broker, no record crossing over."""
    buses = {
        side: KafkaBus(kafka_settings(settings, kafka_bootstrap).replace(kafka_topic_prefix=side))
        for side in (f"a{unique}.", f"b{unique}.")
    }
    a = buses[f"a{unique}."]
    consumers: list[BusConsumer] = []
    try:
        for bus in buses.values():
            assert bus.ensure_topics([spec], 1, 1) == [spec.name]
            assert bus.topic_partitions() == {spec.name: 4}  # only its own, unprefixed
        consumers = [bus.subscribe([spec.name], f"g_{unique}") for bus in buses.values()]
        a.publish(spec.name, "k", b"for a only")

        [record] = receive(consumers[0], 1)
        assert (record.topic, record.value) == (spec.name, b"for a only")
        consumers[0].commit()
        assert receive(consumers[1], 1, timeout=3.0) == []
        physical = KafkaBus(kafka_settings(settings, kafka_bootstrap)).topic_partitions()
        assert {f"a{unique}.{spec.name}", f"b{unique}.{spec.name}"} <= set(physical)
        assert spec.name not in physical
    finally:
        for consumer in consumers:
            consumer.close()
        for bus in buses.values():
            bus.close()
