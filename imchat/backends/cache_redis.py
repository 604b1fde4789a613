"""Redis adapter of the cache: plain string keys under ``imchat:cache:`` with a TTL."""

from __future__ import annotations

from imchat.backends import redis_client
from imchat.backends.base import Cache
from imchat.backends.redis_client import KEY_PREFIX, unavailable_on_error
from imchat.config import Settings

CACHE_PREFIX = KEY_PREFIX + "cache:"


def cache_key(key: str) -> str:
    return CACHE_PREFIX + key


class RedisCache(Cache):
    def __init__(self, settings: Settings) -> None:
        self._client = redis_client.connect(settings.redis_url)

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

    def ping(self, timeout: float = 2.0) -> None:
        redis_client.ping(self._client, timeout)

    def close(self) -> None:
        redis_client.close(self._client)
