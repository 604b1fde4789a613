"""Embedded twin of the Redis sequence/dedup/cache store.

Counters and dedup claims must survive a restart, so they live in SQLite;
the cache need not, so it lives in memory.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from imchat.backends.base import SeqAssignment, SeqCounter, SeqRequest, SequenceStore
from imchat.backends.sqlite_file import SqliteFile

SCHEMA = """
CREATE TABLE IF NOT EXISTS seq_counters (
    conversation_id TEXT PRIMARY KEY, seq INTEGER NOT NULL, ceiling INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS dedup_claims (
    key TEXT PRIMARY KEY, value TEXT NOT NULL, expires_at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS dedup_claims_expiry ON dedup_claims (expires_at);
"""


class EmbeddedSequenceStore(SequenceStore):
    name = "redis (embedded)"

    def __init__(self, path: Path | str) -> None:
        self._db = SqliteFile(path, SCHEMA)
        self._cache: dict[str, tuple[str, float]] = {}
        self._cache_lock = threading.Lock()

    def incr_seq(self, conversation_id: str) -> SeqCounter | None:
        with self._db.transaction() as db:
            row = db.execute(
                "UPDATE seq_counters SET seq = seq + 1 WHERE conversation_id = ? "
                "RETURNING seq, ceiling",
                (conversation_id,),
            ).fetchone()
        return SeqCounter(row[0], row[1]) if row else None

    def incr_seqs(self, conversation_ids: Sequence[str]) -> list[SeqCounter | None]:
        """Hand out the next seq of each conversation, all in one SQLite transaction."""
        counters: list[SeqCounter | None] = []
        with self._db.transaction() as db:
            for conversation_id in conversation_ids:
                row = db.execute(
                    "UPDATE seq_counters SET seq = seq + 1 WHERE conversation_id = ? "
                    "RETURNING seq, ceiling",
                    (conversation_id,),
                ).fetchone()
                counters.append(SeqCounter(row[0], row[1]) if row else None)
        return counters

    def assign_seqs(
        self, requests: Sequence[SeqRequest], dedup_ttl_seconds: int
    ) -> list[SeqAssignment | None]:
        now = time.time()
        results: list[SeqAssignment | None] = []
        with self._db.transaction() as db:
            for request in requests:
                results.append(self._assign(db, request, now, dedup_ttl_seconds))
        return results

    @staticmethod
    def _assign(
        db: sqlite3.Connection, request: SeqRequest, now: float, ttl: int
    ) -> SeqAssignment | None:
        earlier = db.execute(
            "SELECT value FROM dedup_claims WHERE key = ? AND expires_at > ?",
            (request.dedup_key, now),
        ).fetchone()
        if earlier:
            return SeqAssignment.decode(str(earlier[0]))
        row = db.execute(
            "UPDATE seq_counters SET seq = seq + 1 WHERE conversation_id = ? "
            "RETURNING seq, ceiling",
            (request.conversation_id,),
        ).fetchone()
        if row is None:
            return None
        assignment = SeqAssignment(row[0], row[1], request.msg_id, request.ts, duplicate=False)
        db.execute(
            "INSERT OR REPLACE INTO dedup_claims (key, value, expires_at) VALUES (?, ?, ?)",
            (request.dedup_key, assignment.encode(), now + ttl),
        )
        return assignment

    def init_seq(self, conversation_id: str, seq: int, ceiling: int) -> None:
        with self._db.transaction() as db:
            db.execute(
                "INSERT OR IGNORE INTO seq_counters (conversation_id, seq, ceiling) "
                "VALUES (?, ?, ?)",
                (conversation_id, seq, ceiling),
            )

    def raise_ceiling(self, conversation_id: str, ceiling: int) -> None:
        with self._db.transaction() as db:
            db.execute(
                "UPDATE seq_counters SET ceiling = MAX(ceiling, ?) WHERE conversation_id = ?",
                (ceiling, conversation_id),
            )

    def claim_dedup(self, key: str, value: str, ttl_seconds: int) -> str | None:
        now = time.time()
        with self._db.transaction() as db:
            row = db.execute(
                "SELECT value FROM dedup_claims WHERE key = ? AND expires_at > ?", (key, now)
            ).fetchone()
            if row:
                return str(row[0])
            db.execute(
                "INSERT OR REPLACE INTO dedup_claims (key, value, expires_at) VALUES (?, ?, ?)",
                (key, value, now + ttl_seconds),
            )
        return None

    def release_dedup(self, key: str, value: str) -> None:
        with self._db.transaction() as db:
            db.execute("DELETE FROM dedup_claims WHERE key = ? AND value = ?", (key, value))

    def purge_expired(self) -> int:
        """Drop expired dedup claims (Redis does this by TTL)."""
        with self._db.transaction() as db:
            return db.execute(
                "DELETE FROM dedup_claims WHERE expires_at <= ?", (time.time(),)
            ).rowcount

    def cache_get(self, key: str) -> str | None:
        with self._cache_lock:
            hit = self._cache.get(key)
            if hit is None:
                return None
            if hit[1] <= time.monotonic():
                del self._cache[key]
                return None
            return hit[0]

    def cache_set(self, key: str, value: str, ttl_seconds: int) -> None:
        with self._cache_lock:
            self._cache[key] = (value, time.monotonic() + ttl_seconds)

    def cache_delete(self, key: str) -> None:
        with self._cache_lock:
            self._cache.pop(key, None)

    def ping(self, timeout: float = 2.0) -> None:
        self._db.query("SELECT 1")

    def close(self) -> None:
        self._db.close()
