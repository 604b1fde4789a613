"""The Cache contract, run against the embedded twin and real Redis alike.

Then what only one side has: the twin's sweep of expired entries, and the
Redis adapter's key layout and behaviour when its server stops (on a private
redis-server started by the test, never the shared one).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import redis

from imchat.backends.base import Cache, SeqRequest, SequenceStore
from imchat.backends.cache_embedded import EmbeddedCache
from imchat.backends.cache_redis import RedisCache, cache_key
from imchat.backends.seq_embedded import EmbeddedSequenceStore
from imchat.backends.seq_redis import RedisSequenceStore
from imchat.config import Settings

from .redis_server import PrivateRedis, drop_test_keys, raises_unavailable_quickly

Key = Callable[[str], str]


@pytest.fixture
def key(unique: str) -> Key:
    """Cache keys private to this test run."""
    return lambda name: f"t-{unique}-{name}"


@pytest.fixture(
    params=[
        pytest.param("embedded", marks=pytest.mark.unit),
        pytest.param("redis", marks=pytest.mark.integration),
    ]
)
def backend(request: pytest.FixtureRequest, settings: Settings, unique: str) -> Iterator[str]:
    """Which side the test runs on: the embedded twin, or the shared Redis."""
    if request.param == "embedded":
        yield ""
        return
    url: str = request.getfixturevalue("redis_url")
    yield url
    drop_test_keys(url, unique)


@pytest.fixture
def cache(backend: str, settings: Settings) -> Iterator[Cache]:
    built: Cache = RedisCache(settings.replace(redis_url=backend)) if backend else EmbeddedCache()
    yield built
    built.close()


def test_set_get_delete(cache: Cache, key: Key) -> None:
    assert cache.get(key("group:1")) is None

    cache.set(key("group:1"), '{"members": ["u1"]}', 60)
    assert cache.get(key("group:1")) == '{"members": ["u1"]}'
    cache.set(key("group:1"), '{"members": ["u1", "u2"]}', 60)
    assert cache.get(key("group:1")) == '{"members": ["u1", "u2"]}'

    cache.delete(key("group:1"))
    assert cache.get(key("group:1")) is None
    cache.delete(key("group:1"))  # deleting twice is fine


def test_an_entry_expires(cache: Cache, key: Key) -> None:
    cache.set(key("group:1"), "members", 1)
    assert cache.get(key("group:1")) == "members"

    time.sleep(1.1)

    assert cache.get(key("group:1")) is None


def test_cache_and_dedup_do_not_share_keys(
    cache: Cache, backend: str, settings: Settings, tmp_path: Path, key: Key
) -> None:
    """A cache key and a dedup key of the same name, on one server, stay apart."""
    seqs: SequenceStore = (
        RedisSequenceStore(settings.replace(redis_url=backend))
        if backend
        else EmbeddedSequenceStore(tmp_path / "seq.sqlite3")
    )
    try:
        seqs.init_seq(key("conv"), 0, 100)
        cache.set(key("k"), "cached", 60)
        [assigned] = seqs.assign_seqs([SeqRequest(key("conv"), key("k"), "m1", 1)], 60)
        assert assigned is not None and not assigned.duplicate
        assert cache.get(key("k")) == "cached"
    finally:
        seqs.close()


def test_get_many_answers_each_key_in_order(cache: Cache, key: Key) -> None:
    cache.set(key("a"), "1", 60)
    cache.set(key("c"), "3", 60)
    assert cache.get_many([key("a"), key("b"), key("c")]) == ["1", None, "3"]
    assert cache.get_many([]) == []


def test_exchange_sets_and_returns_what_was_there(cache: Cache, key: Key) -> None:
    assert cache.exchange(key("presence"), "on", 60) is None
    assert cache.exchange(key("presence"), "gone:5", 60) == "on"
    assert cache.get(key("presence")) == "gone:5"


def test_replace_sets_only_over_the_expected_value(cache: Cache, key: Key) -> None:
    assert cache.replace(key("p"), None, "on", 60), "absent, as expected"
    assert not cache.replace(key("p"), None, "again", 60), "no longer absent"
    assert not cache.replace(key("p"), "gone:1", "off", 60)
    assert cache.get(key("p")) == "on"
    assert cache.replace(key("p"), "on", "gone:1", 60)
    assert cache.get(key("p")) == "gone:1"


def test_replace_has_exactly_one_winner_among_racers(cache: Cache, key: Key) -> None:
    cache.set(key("p"), "gone:7", 60)
    with ThreadPoolExecutor(max_workers=8) as pool:
        won = list(pool.map(lambda _: cache.replace(key("p"), "gone:7", "off", 60), range(16)))
    assert won.count(True) == 1


def test_replace_and_exchange_set_a_ttl(cache: Cache, key: Key) -> None:
    cache.exchange(key("x"), "on", 1)
    cache.replace(key("y"), None, "on", 1)
    time.sleep(1.1)
    assert cache.get_many([key("x"), key("y")]) == [None, None]


def test_ping_answers(cache: Cache) -> None:
    cache.ping(timeout=1.0)


# ------------------------------------------------- embedded twin only
@pytest.mark.unit
def test_embedded_sweeps_expired_entries_on_writes() -> None:
    now = [1000.0]
    cache = EmbeddedCache(clock=lambda: now[0], sweep_every_seconds=60)
    for n in range(1000):  # keys that are set once and never read again
        cache.set(f"user-exists:{n}", "1", 10)
        now[0] += 1
        assert len(cache) <= 60 + 10
    cache.set("kept", "v", 3600)
    now[0] += 61
    cache.set("trigger", "v", 10)
    assert len(cache) == 2
    assert cache.get("kept") == "v"


# ---------------------------------------------------------- Redis only
@pytest.mark.integration
def test_redis_keys_are_prefixed(redis_url: str, settings: Settings, key: Key, unique: str) -> None:
    cache = RedisCache(settings.replace(redis_url=redis_url))
    raw = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        cache.set(key("c"), "v", 60)

        assert cache_key(key("c")) == f"imchat:cache:{key('c')}"
        assert raw.get(f"imchat:cache:{key('c')}") == "v"
        assert 0 < raw.ttl(f"imchat:cache:{key('c')}") <= 60
    finally:
        raw.close()
        cache.close()
        drop_test_keys(redis_url, unique)


@pytest.mark.integration
def test_redis_down_raises_backend_unavailable_then_recovers_empty(
    private_redis: PrivateRedis, settings: Settings
) -> None:
    cache = RedisCache(settings.replace(redis_url=private_redis.url))
    try:
        cache.set("k", "v", 60)
        assert cache.get("k") == "v"

        private_redis.stop()

        raises_unavailable_quickly(lambda: cache.ping(timeout=1.0), within=3.0)
        raises_unavailable_quickly(lambda: cache.get("k"), within=3.0)
        raises_unavailable_quickly(lambda: cache.set("k", "w", 60), within=3.0)
        raises_unavailable_quickly(lambda: cache.delete("k"), within=3.0)

        private_redis.start()  # same port, no persistence: the entry is gone

        cache.ping(timeout=1.0)
        assert cache.get("k") is None
        cache.set("k", "w", 60)
        assert cache.get("k") == "w"
    finally:
        cache.close()
