"""Embedded twin of the Redis sequence store.

Counters and dedup claims must survive a restart, so they live in SQLite.
Redis drops a dedup key when its TTL runs out; here the writes themselves
purge the expired claims, a bounded batch at a time (``PurgeSchedule``).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from imchat.backends.base import SeqAssignment, SeqRequest, SequenceStore
from imchat.backends.sqlite_file import PurgeSchedule, SqliteFile

SCHEMA = """
CREATE TABLE IF NOT EXISTS seq_counters (
    conversation_id TEXT PRIMARY KEY, seq INTEGER NOT NULL, ceiling INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS dedup_claims (
    key TEXT PRIMARY KEY, value TEXT NOT NULL, expires_at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS dedup_claims_expiry ON dedup_claims (expires_at);
"""


def claim_key(request: SeqRequest) -> str:
    """A claim per conversation, as Redis's ``dedup:{conversation}:key``: a client id
    is unique per sender and conversation, so the same id elsewhere is another message."""
    return f"{{{request.conversation_id}}}:{request.dedup_key}"


class EmbeddedSequenceStore(SequenceStore):
    name = "redis (embedded)"

    def __init__(
        self,
        path: Path | str,
        clock: Callable[[], float] = time.time,
        purge: PurgeSchedule | None = None,
    ) -> None:
        self._db = SqliteFile(path, SCHEMA)
        self._clock = clock
        self._purge = purge or PurgeSchedule()

    def assign_seqs(
        self, requests: Sequence[SeqRequest], dedup_ttl_seconds: int
    ) -> list[SeqAssignment | None]:
        now = self._clock()
        results: list[SeqAssignment | None] = []
        with self._db.transaction() as db:
            for request in requests:
                results.append(self._assign(db, request, now, dedup_ttl_seconds))
            self._purge.run(now, len(requests), lambda limit: _purge_claims(db, now, limit))
        return results

    @staticmethod
    def _assign(
        db: sqlite3.Connection, request: SeqRequest, now: float, ttl: int
    ) -> SeqAssignment | None:
        earlier = db.execute(
            "SELECT value FROM dedup_claims WHERE key = ? AND expires_at > ?",
            (claim_key(request), now),
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
            (claim_key(request), assignment.encode(), now + ttl),
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

    def ping(self, timeout: float = 2.0) -> None:
        self._db.query("SELECT 1")

    def close(self) -> None:
        self._db.close()


def _purge_claims(db: sqlite3.Connection, now: float, limit: int) -> int:
    """Drop up to ``limit`` expired claims, oldest first (the expiry index finds them)."""
    return db.execute(
        "DELETE FROM dedup_claims WHERE rowid IN "
        "(SELECT rowid FROM dedup_claims WHERE expires_at <= ? ORDER BY expires_at LIMIT ?)",
        (now, limit),
    ).rowcount
