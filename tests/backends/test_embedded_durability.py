"""The embedded twins keep what must survive a restart of the process, and
drop on their own what has outlived its retention (the bus log, the dedup
claims), in bounded batches on their write path."""

from __future__ import annotations

import sqlite3
import time
import uuid
from pathlib import Path

import pytest

from imchat.backends.base import SeqAssignment, SeqRequest
from imchat.backends.bus_embedded import EmbeddedBus
from imchat.backends.seq_embedded import EmbeddedSequenceStore
from imchat.backends.sqlite_file import PurgeSchedule
from imchat.wire.topics import TopicSpec

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


class Clock:
    """A wall clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def count(path: Path, table: str) -> int:
    with sqlite3.connect(path) as db:
        return int(db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])


def test_retention_purges_old_records_only(tmp_path: Path) -> None:
    clock = Clock()
    bus = EmbeddedBus(tmp_path / "bus.sqlite3", clock=clock)
    bus.ensure_topics([SPEC])
    bus.publish(SPEC.name, "k", b"old")
    clock.now += 10
    bus.publish(SPEC.name, "k", b"new")
    clock.now += 3591  # "old" is past the topic's hour, "new" is not
    bus.publish(SPEC.name, "k", b"newer")
    records = bus.subscribe([SPEC.name], "g").poll_batch(10, 0.05)
    assert [r.value for r in records] == [b"new", b"newer"]


def test_the_log_stays_bounded_under_continued_writes(tmp_path: Path) -> None:
    path, clock = tmp_path / "bus.sqlite3", Clock()
    spec = TopicSpec("bounded_test", 2, 10_000, "test")  # ten seconds
    bus = EmbeddedBus(path, clock=clock)  # the default schedule: nothing else purges
    bus.ensure_topics([spec])
    per_write, every = 5, PurgeSchedule().every_seconds
    peak = 0
    for n in range(1000):  # one write a second for 1,000 seconds
        bus.publish_many([(spec.name, f"k{i}", f"{n}.{i}".encode()) for i in range(per_write)])
        peak = max(peak, count(path, "bus_records"))
        clock.now += 1
    # At most the retention plus one purge interval of records, of 5,000 written.
    assert peak <= (10 + every + 1) * per_write
    records = bus.subscribe([spec.name], "g").poll_batch(10_000, 0.05)
    assert records and all(int(r.value.split(b".")[0]) >= 1000 - 10 - every for r in records)
    assert records[-1].value == b"999.4"


def test_a_backlog_is_purged_a_bounded_batch_per_write(tmp_path: Path) -> None:
    path, clock = tmp_path / "bus.sqlite3", Clock()
    bus = EmbeddedBus(path, clock=clock, purge=PurgeSchedule(every_seconds=60, batch=100))
    bus.ensure_topics([SPEC])
    bus.publish_many([(SPEC.name, "k", b"old")] * 1000)
    clock.now += 3601  # all of it past the topic's retention at once

    counts = []
    for _ in range(11):
        bus.publish(SPEC.name, "k", b"new")
        counts.append(count(path, "bus_records"))

    # Each write deletes at most 100 expired rows plus its own one; while it
    # finds that many the next write goes on, then the schedule waits again.
    assert counts == [900, 800, 700, 600, 500, 400, 300, 200, 100, 10, 11]


def test_the_dedup_table_stays_bounded_under_continued_writes(tmp_path: Path) -> None:
    path, clock = tmp_path / "seq.sqlite3", Clock()
    store = EmbeddedSequenceStore(path, clock=clock)  # the default schedule
    store.init_seq("conv-1", 0, 1_000_000)
    per_write, ttl, every = 5, 10, PurgeSchedule().every_seconds
    peak, last = 0, []
    for _ in range(1000):
        last = [SeqRequest("conv-1", uuid.uuid4().hex, "m", 1) for _ in range(per_write)]
        store.assign_seqs(last, ttl)
        peak = max(peak, count(path, "dedup_claims"))
        clock.now += 1
    assert peak <= (ttl + every + 1) * per_write
    # Claims within their TTL still hold.
    clock.now -= 1
    assert store.assign_seqs(last[:1], ttl) == [SeqAssignment(4996, 0, "m", 1, duplicate=True)]
    store.close()


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
