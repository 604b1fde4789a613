"""Embedded twin of the Kafka bus: a durable log in one SQLite file.

A record is committed to SQLite before ``publish`` returns, so an acked
message survives a restart of the process just as it survives a broker
restart with Kafka. Each consumer group keeps its committed position per
topic; one process means one member per group. Each topic's retention is
applied by the writes themselves, a bounded batch at a time, as Kafka's log
cleaner would (``PurgeSchedule``): the log does not grow without bound.
"""

from __future__ import annotations

import sqlite3
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from imchat.backends.base import BusConsumer, BusRecord, MessageBus
from imchat.backends.sqlite_file import PurgeSchedule, SqliteFile
from imchat.wire.topics import TOPICS_BY_NAME, TopicSpec

SCHEMA = """
CREATE TABLE IF NOT EXISTS bus_topics (
    name TEXT PRIMARY KEY, partitions INTEGER NOT NULL, retention_ms INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS bus_records (
    id INTEGER PRIMARY KEY AUTOINCREMENT, topic TEXT NOT NULL, partition INTEGER NOT NULL,
    key TEXT NOT NULL, value BLOB NOT NULL, created_at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS bus_records_topic ON bus_records (topic, id);
CREATE INDEX IF NOT EXISTS bus_records_expiry ON bus_records (topic, created_at);
CREATE TABLE IF NOT EXISTS bus_offsets (
    group_id TEXT NOT NULL, topic TEXT NOT NULL, last_id INTEGER NOT NULL,
    PRIMARY KEY (group_id, topic));
"""


def partition_for(key: str, partitions: int) -> int:
    return zlib.crc32(key.encode()) % max(partitions, 1)


class EmbeddedBus(MessageBus):
    name = "kafka (embedded)"

    def __init__(
        self,
        path: Path | str,
        clock: Callable[[], float] = time.time,
        purge: PurgeSchedule | None = None,
    ) -> None:
        self._db = SqliteFile(path, SCHEMA)
        self._arrived = threading.Condition()
        self._clock = clock
        self._purge = purge or PurgeSchedule()

    def _partitions(self, topic: str) -> int:
        spec = TOPICS_BY_NAME.get(topic)
        return spec.partitions if spec else 1

    def publish(self, topic: str, key: str, value: bytes) -> None:
        self.publish_many([(topic, key, value)])

    def publish_many(self, records: Sequence[tuple[str, str, bytes]]) -> None:
        now = self._clock()
        rows = [(t, partition_for(k, self._partitions(t)), k, v, now) for t, k, v in records]
        with self._db.transaction() as db:
            db.executemany(
                "INSERT INTO bus_records (topic, partition, key, value, created_at) "
                "VALUES (?, ?, ?, ?, ?)",
                rows,
            )
            self._purge.run(now, len(rows), lambda limit: _purge_records(db, now, limit))
        with self._arrived:
            self._arrived.notify_all()

    def wait_for_records(self, timeout: float) -> None:
        with self._arrived:
            self._arrived.wait(timeout)

    def fetch(self, topics: Sequence[str], after: dict[str, int], limit: int) -> list[BusRecord]:
        records: list[BusRecord] = []
        for topic in topics:
            rows = self._db.query(
                "SELECT id, partition, key, value FROM bus_records "
                "WHERE topic = ? AND id > ? ORDER BY id LIMIT ?",
                (topic, after.get(topic, 0), limit - len(records)),
            )
            records += [BusRecord(topic, int(p), int(i), str(k), bytes(v)) for i, p, k, v in rows]
            if len(records) >= limit:
                break
        return records

    def count_after(self, topics: Sequence[str], after: dict[str, int]) -> int:
        return sum(
            int(
                self._db.query(
                    "SELECT COUNT(*) FROM bus_records WHERE topic = ? AND id > ?",
                    (topic, after.get(topic, 0)),
                )[0][0]
            )
            for topic in topics
        )

    def committed(self, group_id: str, topics: Sequence[str]) -> dict[str, int]:
        marks = placeholders(len(topics))
        rows = self._db.query(
            f"SELECT topic, last_id FROM bus_offsets WHERE group_id = ? AND topic IN ({marks})",
            (group_id, *topics),
        )
        return {str(t): int(i) for t, i in rows}

    def commit(self, group_id: str, positions: dict[str, int]) -> None:
        with self._db.transaction() as db:
            db.executemany(
                "INSERT INTO bus_offsets (group_id, topic, last_id) VALUES (?, ?, ?) "
                "ON CONFLICT (group_id, topic) "
                "DO UPDATE SET last_id = MAX(last_id, excluded.last_id)",
                [(group_id, t, i) for t, i in positions.items()],
            )

    def subscribe(self, topics: Sequence[str], group_id: str) -> BusConsumer:
        return EmbeddedConsumer(self, list(topics), group_id)

    def ensure_topics(
        self, specs: Iterable[TopicSpec], replication_factor: int = 1, min_insync_replicas: int = 1
    ) -> list[str]:
        existing = self.topic_partitions()
        created = [s for s in specs if s.name not in existing]
        with self._db.transaction() as db:
            db.executemany(
                "INSERT INTO bus_topics (name, partitions, retention_ms) VALUES (?, ?, ?)",
                [(s.name, s.partitions, s.retention_ms) for s in created],
            )
        return [s.name for s in created]

    def topic_partitions(self) -> dict[str, int]:
        return {
            str(n): int(p) for n, p in self._db.query("SELECT name, partitions FROM bus_topics")
        }

    def ping(self, timeout: float = 2.0) -> None:
        self._db.query("SELECT 1")

    def close(self) -> None:
        with self._arrived:
            self._arrived.notify_all()
        self._db.close()


def _purge_records(db: sqlite3.Connection, now: float, limit: int) -> int:
    """Drop up to ``limit`` records past their topic's retention (the expiry index finds them)."""
    deleted = 0
    for name, retention_ms in db.execute("SELECT name, retention_ms FROM bus_topics").fetchall():
        deleted += db.execute(
            "DELETE FROM bus_records WHERE id IN (SELECT id FROM bus_records "
            "WHERE topic = ? AND created_at < ? ORDER BY created_at LIMIT ?)",
            (name, now - retention_ms / 1000, limit - deleted),
        ).rowcount
        if deleted >= limit:
            break
    return deleted


def placeholders(n: int) -> str:
    return ", ".join("?" * n)


class EmbeddedConsumer(BusConsumer):
    def __init__(self, bus: EmbeddedBus, topics: list[str], group_id: str) -> None:
        self._bus = bus
        self._topics = topics
        self._group_id = group_id
        self._position = bus.committed(group_id, topics)
        self._uncommitted: dict[str, int] = {}

    def poll_batch(self, max_records: int, timeout: float) -> list[BusRecord]:
        deadline = time.monotonic() + timeout
        while True:
            records = self._bus.fetch(self._topics, self._position, max_records)
            if records or time.monotonic() >= deadline:
                break
            self._bus.wait_for_records(min(0.05, max(deadline - time.monotonic(), 0)))
        for record in records:
            self._position[record.topic] = record.offset
            self._uncommitted[record.topic] = record.offset
        return records

    def lag(self) -> int:
        return self._bus.count_after(self._topics, self._position)

    def commit(self) -> None:
        if self._uncommitted:
            self._bus.commit(self._group_id, self._uncommitted)
            self._uncommitted = {}

    def close(self) -> None:
        self._uncommitted = {}
