"""Rate limits for register and login: fixed windows of N attempts per key.

The embedded twin counts in memory (one process, so one set of counters); the
Redis limiter counts with INCR + EXPIRE in one pipeline so that every web
worker shares the counters. Both count the attempt that is refused too, so a
client hammering away keeps hitting the limit until its window ends.
"""

from __future__ import annotations

import abc
import math
import threading
import time
from dataclasses import dataclass
from typing import Any

from imchat.backends.base import BackendUnavailable
from imchat.config import Settings


@dataclass(frozen=True)
class Limit:
    """At most ``max_hits`` attempts per ``window_seconds`` for each key of ``scope``."""

    scope: str
    max_hits: int
    window_seconds: int

    @property
    def enabled(self) -> bool:
        return self.max_hits > 0 and self.window_seconds > 0


def window_of(limit: Limit, now: float) -> tuple[int, float]:
    """The index of the window holding ``now`` and the seconds until it ends."""
    index = int(now // limit.window_seconds)
    return index, (index + 1) * limit.window_seconds - now


def retry_after_seconds(remaining: float) -> int:
    """Whole seconds for a Retry-After header: never 0, so clients do wait."""
    return max(1, math.ceil(remaining))


class RateLimiter(abc.ABC):
    """Counts attempts per (scope, key) in fixed windows."""

    @abc.abstractmethod
    def hit(self, limit: Limit, key: str) -> int | None:
        """Count one attempt; return the seconds to wait when over the limit, else None."""

    def close(self) -> None:  # noqa: B027 - optional hook
        pass


class MemoryRateLimiter(RateLimiter):
    """The embedded twin: counters in a dict, dropped once their window is over."""

    # Past this many live counters, expired ones are swept on the next hit.
    SWEEP_AT = 10_000

    def __init__(self, clock: Any = time.time) -> None:
        self._clock = clock
        self._counts: dict[tuple[str, str, int], tuple[int, float]] = {}
        self._lock = threading.Lock()

    def hit(self, limit: Limit, key: str) -> int | None:
        if not limit.enabled:
            return None
        now = self._clock()
        index, remaining = window_of(limit, now)
        with self._lock:
            if len(self._counts) >= self.SWEEP_AT:
                self._sweep(now)
            slot = (limit.scope, key, index)
            count = self._counts.get(slot, (0, 0.0))[0] + 1
            self._counts[slot] = (count, now + remaining)
        return retry_after_seconds(remaining) if count > limit.max_hits else None

    def _sweep(self, now: float) -> None:
        for slot in [s for s, (_, ends) in self._counts.items() if ends <= now]:
            del self._counts[slot]


class RedisRateLimiter(RateLimiter):
    """Counters in Redis, shared by every worker; each key expires with its window."""

    def __init__(self, redis_url: str, prefix: str = "imchat:rl", clock: Any = time.time) -> None:
        import redis

        self._redis = redis.Redis.from_url(
            redis_url, socket_timeout=1.0, socket_connect_timeout=1.0
        )
        self._prefix = prefix
        self._clock = clock

    def hit(self, limit: Limit, key: str) -> int | None:
        import redis

        if not limit.enabled:
            return None
        index, remaining = window_of(limit, self._clock())
        name = f"{self._prefix}:{limit.scope}:{index}:{key}"
        try:
            pipe = self._redis.pipeline(transaction=True)
            pipe.incr(name)
            # The key names its window, so it only has to outlive that window.
            pipe.expire(name, limit.window_seconds + 1)
            count, _ = pipe.execute()
        except redis.RedisError as exc:
            raise BackendUnavailable("redis", str(exc)) from exc
        return retry_after_seconds(remaining) if int(count) > limit.max_hits else None

    def close(self) -> None:
        self._redis.close()


@dataclass(frozen=True)
class AuthLimits:
    """The limits on register and login (0 attempts disables a limit)."""

    login_per_address: Limit
    login_per_username: Limit
    register_per_address: Limit
    register_per_username: Limit


def auth_limits(settings: Settings) -> AuthLimits:
    """Read the limits from settings (defaults: see docs/api.md)."""
    login_window = settings.login_window_seconds
    register_window = settings.register_window_seconds
    return AuthLimits(
        login_per_address=Limit("login:addr", settings.login_limit_per_address, login_window),
        login_per_username=Limit("login:user", settings.login_limit_per_username, login_window),
        register_per_address=Limit(
            "register:addr", settings.register_limit_per_address, register_window
        ),
        register_per_username=Limit(
            "register:user", settings.register_limit_per_username, register_window
        ),
    )
