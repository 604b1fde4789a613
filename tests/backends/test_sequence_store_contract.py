"""The SequenceStore contract, run against the embedded twin and real Redis alike.

Then what only one side has: the twin's durability across a re-open, and the
Redis adapter's behaviour when its server stops, hangs or comes back empty
(on a private redis-server started by the test, never the shared one).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from imchat.backends.base import (
    BackendUnavailable,
    SeqAssignment,
    SeqCounter,
    SeqRequest,
    SequenceStore,
)
from imchat.backends.seq_embedded import EmbeddedSequenceStore
from imchat.backends.seq_redis import RedisSequenceStore, seq_key
from imchat.config import Settings
from tests.support.waiting import free_port

Conv = Callable[[str], str]


@pytest.fixture
def conv(unique: str) -> Conv:
    """Conversation (and dedup/cache) ids private to this test run."""
    return lambda name: f"t-{unique}-{name}"


def _drop_test_keys(url: str, unique: str) -> None:
    client = redis.Redis.from_url(url)
    try:
        for key in client.scan_iter(match=f"imchat:*{unique}*", count=500):
            client.delete(key)
    finally:
        client.close()


@pytest.fixture(params=["embedded", "redis"])
def store(
    request: pytest.FixtureRequest, tmp_path: Path, settings: Settings, unique: str
) -> Iterator[SequenceStore]:
    if request.param == "embedded":
        embedded = EmbeddedSequenceStore(tmp_path / "seq.sqlite3")
        yield embedded
        embedded.close()
        return
    url: str = request.getfixturevalue("redis_url")
    real = RedisSequenceStore(settings.replace(redis_url=url))
    yield real
    real.close()
    _drop_test_keys(url, unique)


# ------------------------------------------------------------- counters
def test_incr_on_unknown_counter_returns_none_and_creates_nothing(
    store: SequenceStore, conv: Conv
) -> None:
    assert store.incr_seq(conv("ghost")) is None
    assert store.incr_seq(conv("ghost")) is None


def test_init_then_incr_counts_up_with_the_ceiling(store: SequenceStore, conv: Conv) -> None:
    store.init_seq(conv("a"), 0, 100)
    store.init_seq(conv("b"), 41, 10_000)

    assert [store.incr_seq(conv("a")) for _ in range(3)] == [
        SeqCounter(1, 100),
        SeqCounter(2, 100),
        SeqCounter(3, 100),
    ]
    assert store.incr_seq(conv("b")) == SeqCounter(42, 10_000)


def test_init_does_not_overwrite_an_existing_counter(store: SequenceStore, conv: Conv) -> None:
    store.init_seq(conv("a"), 0, 100)
    store.incr_seq(conv("a"))

    store.init_seq(conv("a"), 500, 1000)

    assert store.incr_seq(conv("a")) == SeqCounter(2, 100)


def test_raise_ceiling_never_lowers_and_never_creates(store: SequenceStore, conv: Conv) -> None:
    store.init_seq(conv("a"), 0, 100)

    store.raise_ceiling(conv("a"), 200)
    assert store.incr_seq(conv("a")) == SeqCounter(1, 200)
    store.raise_ceiling(conv("a"), 150)
    assert store.incr_seq(conv("a")) == SeqCounter(2, 200)

    store.raise_ceiling(conv("gone"), 300)
    assert store.incr_seq(conv("gone")) is None


def test_incr_seqs_batch_equals_sequential_incr(store: SequenceStore, conv: Conv) -> None:
    for side in ("seq", "batch"):
        store.init_seq(conv(f"{side}-a"), 0, 10)
        store.init_seq(conv(f"{side}-b"), 5, 20)
    names = ["a", "b", "ghost", "a", "a", "b"]

    sequential = [store.incr_seq(conv(f"seq-{n}")) for n in names]
    batched = store.incr_seqs([conv(f"batch-{n}") for n in names])

    assert batched == sequential
    assert batched == [
        SeqCounter(1, 10),
        SeqCounter(6, 20),
        None,
        SeqCounter(2, 10),
        SeqCounter(3, 10),
        SeqCounter(7, 20),
    ]
    assert store.incr_seq(conv("batch-a")) == SeqCounter(4, 10)
    assert store.incr_seqs([]) == []


def test_concurrent_incr_hands_out_each_seq_exactly_once(store: SequenceStore, conv: Conv) -> None:
    threads, per_thread = 8, 200
    store.init_seq(conv("hot"), 0, 1_000_000)
    start = threading.Barrier(threads)
    seen: list[list[int]] = [[] for _ in range(threads)]
    errors: list[BaseException] = []

    def sender(mine: list[int]) -> None:
        try:
            start.wait()
            for _ in range(per_thread):
                counter = store.incr_seq(conv("hot"))
                assert counter is not None
                mine.append(counter.seq)
        except BaseException as exc:  # surfaced below: a thread cannot fail the test itself
            errors.append(exc)

    workers = [threading.Thread(target=sender, args=(mine,)) for mine in seen]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=30)

    assert errors == []
    assert sorted(s for mine in seen for s in mine) == list(range(1, threads * per_thread + 1))
    assert all(mine == sorted(mine) for mine in seen)  # each sender sees its seqs grow


# ---------------------------------------------------------------- dedup
def test_assign_seqs_hands_out_the_next_seqs_and_remembers_them(
    store: SequenceStore, conv: Conv
) -> None:
    c = conv("assign")
    store.init_seq(c, 0, 100)
    first = [SeqRequest(c, f"alice:{n}", f"m{n}", 1000 + n) for n in range(3)]
    assert store.assign_seqs(first, 60) == [
        SeqAssignment(n + 1, 100, f"m{n}", 1000 + n, duplicate=False) for n in range(3)
    ]
    # A replayed batch (a resend, or a consumer that crashed before committing)
    # gets the first assignment back and consumes no seq.
    replay = [SeqRequest(c, "alice:1", "other-id", 9999), SeqRequest(c, "alice:9", "m9", 5)]
    assert store.assign_seqs(replay, 60) == [
        SeqAssignment(2, 0, "m1", 1001, duplicate=True),
        SeqAssignment(4, 100, "m9", 5, duplicate=False),
    ]


def test_assign_seqs_on_unknown_counter_records_nothing(store: SequenceStore, conv: Conv) -> None:
    c = conv("assign-unknown")
    request = SeqRequest(c, "bob:1", "m1", 1)
    assert store.assign_seqs([request], 60) == [None]
    store.init_seq(c, 41, 50)
    assert store.assign_seqs([request], 60) == [SeqAssignment(42, 50, "m1", 1, duplicate=False)]


def test_claim_dedup_keeps_the_first_value(store: SequenceStore, conv: Conv) -> None:
    assert store.claim_dedup(conv("alice:c1"), "msg-1", 60) is None
    assert store.claim_dedup(conv("alice:c1"), "msg-2", 60) == "msg-1"
    assert store.claim_dedup(conv("alice:c1"), "msg-3", 60) == "msg-1"
    assert store.claim_dedup(conv("alice:c2"), "msg-4", 60) is None


def test_claim_dedup_expires_after_its_ttl(store: SequenceStore, conv: Conv) -> None:
    assert store.claim_dedup(conv("alice:c1"), "msg-1", 1) is None
    assert store.claim_dedup(conv("alice:c1"), "msg-2", 1) == "msg-1"

    time.sleep(1.1)

    assert store.claim_dedup(conv("alice:c1"), "msg-3", 60) is None
    assert store.claim_dedup(conv("alice:c1"), "msg-4", 60) == "msg-3"


def test_release_dedup_deletes_only_a_matching_claim(store: SequenceStore, conv: Conv) -> None:
    store.claim_dedup(conv("alice:c1"), "msg-1", 60)

    store.release_dedup(conv("alice:c1"), "msg-other")
    assert store.claim_dedup(conv("alice:c1"), "msg-2", 60) == "msg-1"

    store.release_dedup(conv("alice:c1"), "msg-1")
    assert store.claim_dedup(conv("alice:c1"), "msg-3", 60) is None

    store.release_dedup(conv("never-claimed"), "msg-1")  # no error


# ---------------------------------------------------------------- cache
def test_cache_set_get_delete(store: SequenceStore, conv: Conv) -> None:
    assert store.cache_get(conv("group:1")) is None

    store.cache_set(conv("group:1"), '{"members": ["u1"]}', 60)
    assert store.cache_get(conv("group:1")) == '{"members": ["u1"]}'
    store.cache_set(conv("group:1"), '{"members": ["u1", "u2"]}', 60)
    assert store.cache_get(conv("group:1")) == '{"members": ["u1", "u2"]}'

    store.cache_delete(conv("group:1"))
    assert store.cache_get(conv("group:1")) is None
    store.cache_delete(conv("group:1"))  # deleting twice is fine


def test_cache_entry_expires(store: SequenceStore, conv: Conv) -> None:
    store.cache_set(conv("group:1"), "members", 1)
    assert store.cache_get(conv("group:1")) == "members"

    time.sleep(1.1)

    assert store.cache_get(conv("group:1")) is None


def test_cache_and_dedup_do_not_share_keys(store: SequenceStore, conv: Conv) -> None:
    store.cache_set(conv("k"), "cached", 60)
    assert store.claim_dedup(conv("k"), "claimed", 60) is None
    assert store.cache_get(conv("k")) == "cached"


def test_ping_answers(store: SequenceStore) -> None:
    store.ping(timeout=1.0)


# ------------------------------------------------- embedded twin only
def test_embedded_keeps_counters_and_claims_across_reopen(tmp_path: Path) -> None:
    path = tmp_path / "seq.sqlite3"
    first = EmbeddedSequenceStore(path)
    first.init_seq("conv-1", 0, 100)
    first.incr_seqs(["conv-1", "conv-1"])
    first.raise_ceiling("conv-1", 200)
    first.claim_dedup("alice:c1", "msg-1", 60)
    first.close()

    reopened = EmbeddedSequenceStore(path)
    try:
        assert reopened.incr_seq("conv-1") == SeqCounter(3, 200)
        assert reopened.claim_dedup("alice:c1", "msg-2", 60) == "msg-1"
    finally:
        reopened.close()


# ---------------------------------------------------------- Redis only
def test_redis_keys_are_prefixed_and_hash_tagged(
    redis_url: str, settings: Settings, conv: Conv, unique: str
) -> None:
    store = RedisSequenceStore(settings.replace(redis_url=redis_url))
    raw = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        store.init_seq(conv("a"), 7, 100)
        store.claim_dedup(conv("d"), "msg-1", 60)
        store.cache_set(conv("c"), "v", 60)

        assert seq_key(conv("a")) == f"imchat:seq:{{{conv('a')}}}"
        assert raw.hgetall(seq_key(conv("a"))) == {"seq": "7", "ceiling": "100"}
        assert raw.get(f"imchat:dedup:{conv('d')}") == "msg-1"
        assert 0 < raw.ttl(f"imchat:dedup:{conv('d')}") <= 60
        assert raw.get(f"imchat:cache:{conv('c')}") == "v"
    finally:
        raw.close()
        store.close()
        _drop_test_keys(redis_url, unique)


class PrivateRedis:
    """A redis-server of this test's own, on a free port, that it may stop and restart."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._workdir = workdir
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        binary = shutil.which("redis-server")
        assert binary, "redis-server is not installed (scripts/test-services installs it)"
        # No persistence: a restart comes back empty, like a lost Redis.
        args = ["--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        self.proc = subprocess.Popen(
            [binary, *args, "--dir", str(self._workdir)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self._wait_ready()

    def _wait_ready(self) -> None:
        client = redis.Redis.from_url(self.url, socket_timeout=0.5)
        try:
            deadline = time.monotonic() + 5
            while True:
                try:
                    if client.ping():
                        return
                except redis.ConnectionError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.02)
        finally:
            client.close()

    def stop(self) -> None:
        if self.proc is None:
            return
        os.kill(self.proc.pid, signal.SIGCONT)  # in case a test left it paused
        self.proc.terminate()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def pause(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGCONT)

    def command(self, *args: str) -> object:
        client = redis.Redis.from_url(self.url, decode_responses=True)
        try:
            return client.execute_command(*args)
        finally:
            client.close()


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def private_store(private_redis: PrivateRedis, settings: Settings) -> Iterator[RedisSequenceStore]:
    store = RedisSequenceStore(settings.replace(redis_url=private_redis.url))
    yield store
    store.close()


def _raises_unavailable_quickly(call: Callable[[], object], within: float) -> None:
    started = time.monotonic()
    with pytest.raises(BackendUnavailable) as caught:
        call()
    assert caught.value.backend == "redis"
    assert time.monotonic() - started < within


def test_redis_down_raises_backend_unavailable_then_recovers_empty(
    private_redis: PrivateRedis, private_store: RedisSequenceStore
) -> None:
    private_store.init_seq("conv-1", 0, 100)
    assert private_store.incr_seq("conv-1") == SeqCounter(1, 100)

    private_redis.stop()

    _raises_unavailable_quickly(lambda: private_store.ping(timeout=1.0), within=3.0)
    _raises_unavailable_quickly(lambda: private_store.incr_seq("conv-1"), within=3.0)
    _raises_unavailable_quickly(lambda: private_store.incr_seqs(["conv-1"]), within=3.0)
    _raises_unavailable_quickly(lambda: private_store.claim_dedup("k", "v", 60), within=3.0)
    _raises_unavailable_quickly(lambda: private_store.cache_get("k"), within=3.0)

    private_redis.start()  # same port, no persistence: every key and script is gone

    private_store.ping(timeout=1.0)
    assert private_store.incr_seqs(["conv-1"]) == [None]  # reloads the flushed script
    assert private_store.incr_seq("conv-1") is None
    private_store.init_seq("conv-1", 5000, 6000)
    assert private_store.incr_seq("conv-1") == SeqCounter(5001, 6000)


def test_redis_hung_raises_backend_unavailable_within_the_timeouts(
    private_redis: PrivateRedis, private_store: RedisSequenceStore
) -> None:
    private_store.init_seq("conv-1", 0, 100)
    assert private_store.incr_seq("conv-1") == SeqCounter(1, 100)

    private_redis.pause()
    try:
        _raises_unavailable_quickly(lambda: private_store.ping(timeout=0.3), within=1.0)
        _raises_unavailable_quickly(lambda: private_store.incr_seq("conv-1"), within=3.0)
    finally:
        private_redis.resume()

    # The timed-out increment may still have run once the server woke up: the
    # next seq is larger, never a repeat.
    counter = private_store.incr_seq("conv-1")
    assert counter is not None and counter.seq in (2, 3)


def test_incr_seqs_survives_a_script_cache_flush_in_one_pass(
    private_redis: PrivateRedis, private_store: RedisSequenceStore
) -> None:
    private_store.init_seq("conv-1", 0, 100)
    private_store.init_seq("conv-2", 0, 100)
    assert private_store.incr_seqs(["conv-1"]) == [SeqCounter(1, 100)]

    private_redis.command("SCRIPT", "FLUSH")
    private_redis.command("CONFIG", "RESETSTAT")
    batch = private_store.incr_seqs(["conv-1", "conv-2", "conv-1"])
    assert batch == [SeqCounter(2, 100), SeqCounter(1, 100), SeqCounter(3, 100)]

    private_redis.command("CONFIG", "RESETSTAT")
    assert private_store.incr_seqs(["conv-2", "conv-1"]) == [
        SeqCounter(2, 100),
        SeqCounter(4, 100),
    ]
    # Warm path: only the EVALSHAs, no SCRIPT EXISTS / SCRIPT LOAD round trip.
    stats = private_redis.command("INFO", "commandstats")
    assert isinstance(stats, dict)
    assert stats["cmdstat_evalsha"]["calls"] == 2
    assert not [name for name in stats if name.startswith("cmdstat_script")]


class ReplyDroppingRelay:
    """A TCP relay to Redis that can lose one reply: the command ran, its answer never came."""

    def __init__(self, upstream_port: int) -> None:
        self._upstream = ("127.0.0.1", upstream_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"redis://127.0.0.1:{self._listener.getsockname()[1]}/0"
        self.drop_next_reply = threading.Event()
        self._sockets: list[socket.socket] = [self._listener]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # closed
            server = socket.create_connection(self._upstream)
            self._sockets += [client, server]
            threading.Thread(target=self._pump, args=(client, server, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, True), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, replies: bool) -> None:
        try:
            while data := source.recv(65536):
                if replies and self.drop_next_reply.is_set():
                    self.drop_next_reply.clear()
                    break  # swallow the reply and hang up on both sides
                sink.sendall(data)
        except OSError:
            pass
        _close(source, sink)

    def close(self) -> None:
        _close(*self._sockets)


def _close(*sockets: socket.socket) -> None:
    for sock in sockets:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        sock.close()


def test_redis_lost_reply_is_reported_not_retried(
    private_redis: PrivateRedis, settings: Settings
) -> None:
    relay = ReplyDroppingRelay(private_redis.port)
    store = RedisSequenceStore(settings.replace(redis_url=relay.url))
    try:
        # Open the pooled connection and load the script first, so that the
        # reply dropped below is the increment's own, not a NOSCRIPT.
        store.init_seq("warm-up", 0, 100)
        store.incr_seq("warm-up")
        store.init_seq("conv-1", 0, 100)

        relay.drop_next_reply.set()
        with pytest.raises(BackendUnavailable):
            store.incr_seq("conv-1")
        # It ran exactly once: a retry would have handed out seq 2 and skipped 1.
        assert private_redis.command("HGET", seq_key("conv-1"), "seq") == "1"
        assert store.incr_seq("conv-1") == SeqCounter(2, 100)

        relay.drop_next_reply.set()
        with pytest.raises(BackendUnavailable):
            store.claim_dedup("alice:c1", "msg-1", 60)  # a retry would answer "msg-1"
        assert store.claim_dedup("alice:c1", "msg-2", 60) == "msg-1"
    finally:
        store.close()
        relay.close()
