"""Embedded twin of the Redis cache: a dictionary in memory.

A cache need not survive a restart. Entries expire by TTL like Redis keys:
a read drops the expired entry it finds, and a write sweeps them all at most
once a minute, so keys never read again do not pile up.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

from imchat.backends.base import Cache

SWEEP_EVERY_SECONDS = 60.0


class EmbeddedCache(Cache):
    name = "redis (embedded)"

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        sweep_every_seconds: float = SWEEP_EVERY_SECONDS,
    ) -> None:
        self._entries: dict[str, tuple[str, float]] = {}
        self._lock = threading.Lock()
        self._clock = clock
        self._sweep_every = sweep_every_seconds
        self._next_sweep = clock() + sweep_every_seconds

    def get(self, key: str) -> str | None:
        with self._lock:
            return self._live(key)

    def get_many(self, keys: Sequence[str]) -> list[str | None]:
        with self._lock:
            return [self._live(key) for key in keys]

    def set(self, key: str, value: str, ttl_seconds: int) -> None:
        with self._lock:
            self._put(key, value, ttl_seconds)

    def exchange(self, key: str, value: str, ttl_seconds: int) -> str | None:
        with self._lock:
            previous = self._live(key)
            self._put(key, value, ttl_seconds)
            return previous

    def replace(self, key: str, expected: str | None, value: str, ttl_seconds: int) -> bool:
        with self._lock:
            if self._live(key) != expected:
                return False
            self._put(key, value, ttl_seconds)
            return True

    def _live(self, key: str) -> str | None:
        """The unexpired value of ``key`` (dropping an expired one); hold the lock."""
        hit = self._entries.get(key)
        if hit is None:
            return None
        if hit[1] <= self._clock():
            del self._entries[key]
            return None
        return hit[0]

    def _put(self, key: str, value: str, ttl_seconds: int) -> None:
        now = self._clock()
        self._entries[key] = (value, now + ttl_seconds)
        if now >= self._next_sweep:
            self._entries = {k: e for k, e in self._entries.items() if e[1] > now}
            self._next_sweep = now + self._sweep_every

    def delete(self, key: str) -> None:
        with self._lock:
            self._entries.pop(key, None)

    def ping(self, timeout: float = 2.0) -> None:
        """In process: always answers."""

    def __len__(self) -> int:
        """Entries held, expired or not (what the sweep keeps bounded)."""
        with self._lock:
            return len(self._entries)
