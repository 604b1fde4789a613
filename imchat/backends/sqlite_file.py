"""A small shared helper for the embedded twins that keep state in SQLite."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


class SqliteFile:
    """One SQLite connection guarded by a lock.

    WAL with synchronous=NORMAL: a committed write survives a crash of the
    process (what the embedded default promises), at a fraction of the cost
    of an fsync per commit.
    """

    def __init__(self, path: Path | str, schema: str) -> None:
        if str(path) != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.execute("PRAGMA busy_timeout=5000")
        self._lock = threading.RLock()
        # executescript commits on its own: no surrounding transaction.
        with self._lock:
            self._conn.executescript(schema)

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def query(self, sql: str, params: tuple[object, ...] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._conn.execute(sql, params).fetchall()

    def close(self) -> None:
        with self._lock:
            self._conn.close()


class PurgeSchedule:
    """When an embedded twin drops its expired rows: from its own write path.

    So nothing outside has to schedule it, and no write waits on a long
    delete: a purge runs at most every ``every_seconds`` and deletes at most
    ``batch`` rows plus as many as the write added (a backlog shrinks even
    under a steady stream of writes); while a purge finds that many, the
    next write purges again instead of waiting.
    """

    def __init__(self, every_seconds: float = 60.0, batch: int = 1000) -> None:
        self.every_seconds = every_seconds
        self.batch = batch
        self._next = 0.0  # the first write purges: the file may have been closed for days
        self._backlog = False

    def run(self, now: float, written: int, delete_expired: Callable[[int], int]) -> int:
        """Call ``delete_expired(limit)`` if a purge is due at ``now``; return the rows deleted.

        ``written``: the rows the calling write adds.
        """
        # A clock set back (``now`` before the last purge) must not stall purging.
        waiting = self._next - self.every_seconds <= now < self._next
        if waiting and not self._backlog:
            return 0
        limit = self.batch + written
        deleted = delete_expired(limit)
        self._backlog = deleted >= limit
        self._next = now + self.every_seconds
        return deleted
