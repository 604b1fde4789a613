"""Redis adapter of the cache: plain string keys under ``imchat:cache:`` with a TTL."""

from __future__ import annotations

from collections.abc import Sequence

from imchat.backends import redis_client
from imchat.backends.base import Cache
from imchat.backends.redis_client import KEY_PREFIX, unavailable_on_error
from imchat.config import Settings

CACHE_PREFIX = KEY_PREFIX + "cache:"


# Compare and set: ARGV[1] the expected value ("" with ARGV[4] = "1": absent).
REPLACE = """
local current = redis.call('GET', KEYS[1])
local absent = ARGV[4] == '1'
if (absent and not current) or (not absent and current == ARGV[1]) then
  redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
  return 1
end
return 0
"""


def cache_key(key: str) -> str:
    return CACHE_PREFIX + key


class RedisCache(Cache):
    def __init__(self, settings: Settings) -> None:
        self._client = redis_client.connect(settings.redis_url)
        self._replace = self._client.register_script(REPLACE)

    def get(self, key: str) -> str | None:
        with unavailable_on_error("cache get"):
            value = self._client.get(cache_key(key))
        return None if value is None else str(value)

    def set(self, key: str, value: str, ttl_seconds: int) -> None:
        with unavailable_on_error("cache set"):
            self._client.set(cache_key(key), value, ex=ttl_seconds)

    def delete(self, key: str) -> None:
        with unavailable_on_error("cache delete"):
            self._client.delete(cache_key(key))

    def get_many(self, keys: Sequence[str]) -> list[str | None]:
        if not keys:
            return []
        with unavailable_on_error("cache get"):
            values = self._client.mget([cache_key(key) for key in keys])
        return [None if value is None else str(value) for value in values]

    def exchange(self, key: str, value: str, ttl_seconds: int) -> str | None:
        with unavailable_on_error("cache exchange"):
            previous = self._client.set(cache_key(key), value, ex=ttl_seconds, get=True)
        return None if previous is None else str(previous)

    def replace(self, key: str, expected: str | None, value: str, ttl_seconds: int) -> bool:
        absent = "1" if expected is None else "0"
        args: list[str | int] = [expected or "", value, ttl_seconds, absent]
        with unavailable_on_error("cache replace"):
            return bool(self._replace(keys=[cache_key(key)], args=args))

    def ping(self, timeout: float = 2.0) -> None:
        redis_client.ping(self._client, timeout)

    def close(self) -> None:
        redis_client.close(self._client)
