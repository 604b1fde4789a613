"""The embedded twins keep what must survive a restart of the process."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from imchat.backends.bus_embedded import EmbeddedBus
from imchat.topics import TopicSpec

pytestmark = pytest.mark.unit

SPEC = TopicSpec("durable_test", 4, 3_600_000, "test")


def test_published_records_and_commits_survive_reopen(tmp_path: Path) -> None:
    path = tmp_path / "bus.sqlite3"
    bus = EmbeddedBus(path)
    bus.ensure_topics([SPEC])
    bus.publish_many([(SPEC.name, f"k{i % 3}", f"v{i}".encode()) for i in range(10)])
    consumer = bus.subscribe([SPEC.name], "g1")
    assert len(consumer.poll_batch(4, 0.1)) == 4
    consumer.commit()
    bus.close()

    reopened = EmbeddedBus(path)
    assert reopened.topic_partitions() == {SPEC.name: 4}
    rest = reopened.subscribe([SPEC.name], "g1").poll_batch(100, 0.1)
    assert [r.value for r in rest] == [f"v{i}".encode() for i in range(4, 10)]


def test_retention_purges_old_records_only(tmp_path: Path) -> None:
    bus = EmbeddedBus(tmp_path / "bus.sqlite3")
    bus.ensure_topics([SPEC])
    bus.publish(SPEC.name, "k", b"old")
    assert bus.purge_expired(now=time.time() + 10) == 0
    assert bus.purge_expired(now=time.time() + 3601) == 1
    assert bus.subscribe([SPEC.name], "g").poll_batch(10, 0.05) == []


def test_poll_wakes_when_a_record_arrives(tmp_path: Path) -> None:
    import threading

    bus = EmbeddedBus(tmp_path / "bus.sqlite3")
    bus.ensure_topics([SPEC])
    consumer = bus.subscribe([SPEC.name], "g")
    timer = threading.Timer(0.1, bus.publish, args=(SPEC.name, "k", b"late"))
    timer.start()
    started = time.monotonic()
    records = consumer.poll_batch(10, 2.0)
    timer.join()
    assert [r.value for r in records] == [b"late"]
    assert time.monotonic() - started < 1.0
