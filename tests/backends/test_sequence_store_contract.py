"""The SequenceStore contract, run against the embedded twin and real Redis alike.

Then what only one side has: the twin's durability across a re-open, and the
Redis adapter's behaviour when its server stops, hangs or comes back empty
(on a private redis-server started by the test, never the shared one).
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from imchat.backends.base import BackendUnavailable, SeqAssignment, SeqRequest, SequenceStore
from imchat.backends.seq_embedded import EmbeddedSequenceStore
from imchat.backends.seq_redis import RedisSequenceStore, assign_key, seq_key
from imchat.config import Settings

from .redis_server import PrivateRedis, drop_test_keys, raises_unavailable_quickly

Conv = Callable[[str], str]
TTL = 60
integration = pytest.mark.integration


@pytest.fixture
def conv(unique: str) -> Conv:
    """Conversation (and dedup) ids private to this test run."""
    return lambda name: f"t-{unique}-{name}"


@pytest.fixture(
    params=[
        pytest.param("embedded", marks=pytest.mark.unit),
        pytest.param("redis", marks=pytest.mark.integration),
    ]
)
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
    drop_test_keys(url, unique)


def fresh(conversation_id: str) -> SeqRequest:
    """A request under a dedup key never used before: it takes the next seq."""
    return SeqRequest(conversation_id, f"sender:{uuid.uuid4().hex}", uuid.uuid4().hex, 1)


def counters(assignments: list[SeqAssignment | None]) -> list[tuple[int, int] | None]:
    """(seq, ceiling) of each new assignment, None for an unknown counter."""
    for assignment in assignments:
        assert assignment is None or not assignment.duplicate
    return [None if a is None else (a.seq, a.ceiling) for a in assignments]


def next_seq(store: SequenceStore, conversation_id: str) -> tuple[int, int] | None:
    """The conversation's next (seq, ceiling), or None when its counter is unknown."""
    [counter] = counters(store.assign_seqs([fresh(conversation_id)], TTL))
    return counter


# ------------------------------------------------------------- counters
def test_unknown_counter_gives_none_and_creates_nothing(store: SequenceStore, conv: Conv) -> None:
    assert next_seq(store, conv("ghost")) is None
    assert next_seq(store, conv("ghost")) is None
    # Nothing was created: init_seq (which never overwrites) takes effect.
    store.init_seq(conv("ghost"), 41, 50)
    assert next_seq(store, conv("ghost")) == (42, 50)


def test_init_then_assign_counts_up_with_the_ceiling(store: SequenceStore, conv: Conv) -> None:
    store.init_seq(conv("a"), 0, 100)
    store.init_seq(conv("b"), 41, 10_000)

    assert [next_seq(store, conv("a")) for _ in range(3)] == [(1, 100), (2, 100), (3, 100)]
    assert next_seq(store, conv("b")) == (42, 10_000)


def test_init_does_not_overwrite_an_existing_counter(store: SequenceStore, conv: Conv) -> None:
    store.init_seq(conv("a"), 0, 100)
    next_seq(store, conv("a"))

    store.init_seq(conv("a"), 500, 1000)

    assert next_seq(store, conv("a")) == (2, 100)


def test_raise_ceiling_never_lowers_and_never_creates(store: SequenceStore, conv: Conv) -> None:
    store.init_seq(conv("a"), 0, 100)

    store.raise_ceiling(conv("a"), 200)
    assert next_seq(store, conv("a")) == (1, 200)
    store.raise_ceiling(conv("a"), 150)
    assert next_seq(store, conv("a")) == (2, 200)

    store.raise_ceiling(conv("gone"), 300)
    assert next_seq(store, conv("gone")) is None


def test_a_batch_equals_one_request_at_a_time(store: SequenceStore, conv: Conv) -> None:
    for side in ("one", "batch"):
        store.init_seq(conv(f"{side}-a"), 0, 10)
        store.init_seq(conv(f"{side}-b"), 5, 20)
    names = ["a", "b", "ghost", "a", "a", "b"]

    one_by_one = [next_seq(store, conv(f"one-{n}")) for n in names]
    batched = counters(store.assign_seqs([fresh(conv(f"batch-{n}")) for n in names], TTL))

    assert batched == one_by_one
    assert batched == [(1, 10), (6, 20), None, (2, 10), (3, 10), (7, 20)]
    assert next_seq(store, conv("batch-a")) == (4, 10)
    assert store.assign_seqs([], TTL) == []


def test_concurrent_callers_never_get_the_same_seq(store: SequenceStore, conv: Conv) -> None:
    threads, calls, per_call = 8, 50, 4
    store.init_seq(conv("hot"), 0, 1_000_000)
    start = threading.Barrier(threads)
    seen: list[list[int]] = [[] for _ in range(threads)]
    errors: list[BaseException] = []

    def sender(mine: list[int]) -> None:
        try:
            start.wait()
            for _ in range(calls):
                batch = [fresh(conv("hot")) for _ in range(per_call)]
                for counter in counters(store.assign_seqs(batch, TTL)):
                    assert counter is not None
                    mine.append(counter[0])
        except BaseException as exc:  # surfaced below: a thread cannot fail the test itself
            errors.append(exc)

    workers = [threading.Thread(target=sender, args=(mine,)) for mine in seen]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=30)

    assert errors == []
    total = threads * calls * per_call
    assert sorted(s for mine in seen for s in mine) == list(range(1, total + 1))
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


def test_a_dedup_key_keeps_its_first_assignment(store: SequenceStore, conv: Conv) -> None:
    c = conv("first")
    store.init_seq(c, 0, 100)
    assert store.assign_seqs([SeqRequest(c, "alice:c1", "msg-1", 10)], 60) == [
        SeqAssignment(1, 100, "msg-1", 10, duplicate=False)
    ]
    for resend in ("msg-2", "msg-3"):
        assert store.assign_seqs([SeqRequest(c, "alice:c1", resend, 20)], 60) == [
            SeqAssignment(1, 0, "msg-1", 10, duplicate=True)
        ]
    assert store.assign_seqs([SeqRequest(c, "alice:c2", "msg-4", 30)], 60) == [
        SeqAssignment(2, 100, "msg-4", 30, duplicate=False)
    ]


def test_a_dedup_key_expires_after_its_ttl(store: SequenceStore, conv: Conv) -> None:
    c = conv("ttl")
    store.init_seq(c, 0, 100)
    assert store.assign_seqs([SeqRequest(c, "alice:c1", "msg-1", 1)], 1) == [
        SeqAssignment(1, 100, "msg-1", 1, duplicate=False)
    ]
    assert store.assign_seqs([SeqRequest(c, "alice:c1", "msg-2", 2)], 1) == [
        SeqAssignment(1, 0, "msg-1", 1, duplicate=True)
    ]

    time.sleep(1.1)

    assert store.assign_seqs([SeqRequest(c, "alice:c1", "msg-3", 3)], 60) == [
        SeqAssignment(2, 100, "msg-3", 3, duplicate=False)
    ]
    assert store.assign_seqs([SeqRequest(c, "alice:c1", "msg-4", 4)], 60) == [
        SeqAssignment(2, 0, "msg-3", 3, duplicate=True)
    ]


def test_a_dedup_key_is_per_conversation(store: SequenceStore, conv: Conv) -> None:
    """A client id is unique per sender and conversation (docs/protocol.md): the same
    one in another conversation is another message. (Found by the frame fuzzer: the
    embedded twin keyed claims by sender and id alone, so a group send reusing a
    direct send's id was acked with the direct message's msg_id and never stored.)"""
    first, second = conv("per-conv-1"), conv("per-conv-2")
    store.init_seq(first, 0, 100)
    store.init_seq(second, 0, 100)
    store.assign_seqs([SeqRequest(first, "x:other", "msg-0", 5)], 60)
    assert store.assign_seqs([SeqRequest(first, "alice:c1", "msg-1", 10)], 60) == [
        SeqAssignment(2, 100, "msg-1", 10, duplicate=False)
    ]
    assert store.assign_seqs([SeqRequest(second, "alice:c1", "msg-2", 20)], 60) == [
        SeqAssignment(1, 100, "msg-2", 20, duplicate=False)
    ]
    assert store.assign_seqs([SeqRequest(second, "alice:c1", "msg-3", 30)], 60) == [
        SeqAssignment(1, 0, "msg-2", 20, duplicate=True)
    ]


def test_a_dedup_key_repeated_within_one_batch_is_a_duplicate(
    store: SequenceStore, conv: Conv
) -> None:
    c = conv("same-batch")
    store.init_seq(c, 0, 100)
    batch = [
        SeqRequest(c, "alice:c1", "msg-1", 1),
        SeqRequest(c, "alice:c1", "msg-2", 2),
        SeqRequest(c, "alice:c2", "msg-3", 3),
    ]
    assert store.assign_seqs(batch, 60) == [
        SeqAssignment(1, 100, "msg-1", 1, duplicate=False),
        SeqAssignment(1, 0, "msg-1", 1, duplicate=True),
        SeqAssignment(2, 100, "msg-3", 3, duplicate=False),
    ]


def test_ping_answers(store: SequenceStore) -> None:
    store.ping(timeout=1.0)


# ------------------------------------------------- embedded twin only
@pytest.mark.unit
def test_embedded_keeps_counters_and_claims_across_reopen(tmp_path: Path) -> None:
    path = tmp_path / "seq.sqlite3"
    first = EmbeddedSequenceStore(path)
    first.init_seq("conv-1", 0, 100)
    claimed = SeqRequest("conv-1", "alice:c1", "msg-1", 7)
    assert counters(first.assign_seqs([claimed, fresh("conv-1")], TTL)) == [(1, 100), (2, 100)]
    first.raise_ceiling("conv-1", 200)
    first.close()

    reopened = EmbeddedSequenceStore(path)
    try:
        assert next_seq(reopened, "conv-1") == (3, 200)
        resend = SeqRequest("conv-1", "alice:c1", "msg-2", 8)
        assert reopened.assign_seqs([resend], TTL) == [
            SeqAssignment(1, 0, "msg-1", 7, duplicate=True)
        ]
    finally:
        reopened.close()


# ---------------------------------------------------------- Redis only
@integration
def test_redis_keys_are_prefixed_and_hash_tagged(
    redis_url: str, settings: Settings, conv: Conv, unique: str
) -> None:
    store = RedisSequenceStore(settings.replace(redis_url=redis_url))
    raw = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        store.init_seq(conv("a"), 7, 100)
        request = SeqRequest(conv("a"), "d", "msg-1", 5)
        store.assign_seqs([request], 60)

        assert seq_key(conv("a")) == f"imchat:seq:{{{conv('a')}}}"
        assert raw.hgetall(seq_key(conv("a"))) == {"seq": "8", "ceiling": "100"}
        assert assign_key(request) == f"imchat:dedup:{{{conv('a')}}}:d"
        assert raw.get(assign_key(request)) == "msg-1|8|5"
        assert 0 < raw.ttl(assign_key(request)) <= 60
    finally:
        raw.close()
        store.close()
        drop_test_keys(redis_url, unique)


@pytest.fixture
def private_store(private_redis: PrivateRedis, settings: Settings) -> Iterator[RedisSequenceStore]:
    store = RedisSequenceStore(settings.replace(redis_url=private_redis.url))
    yield store
    store.close()


@integration
def test_redis_down_raises_backend_unavailable_then_recovers_empty(
    private_redis: PrivateRedis, private_store: RedisSequenceStore
) -> None:
    private_store.init_seq("conv-1", 0, 100)
    assert next_seq(private_store, "conv-1") == (1, 100)

    private_redis.stop()

    raises_unavailable_quickly(lambda: private_store.ping(timeout=1.0), within=3.0)
    raises_unavailable_quickly(lambda: next_seq(private_store, "conv-1"), within=3.0)
    raises_unavailable_quickly(lambda: private_store.init_seq("conv-2", 0, 100), within=3.0)
    raises_unavailable_quickly(lambda: private_store.raise_ceiling("conv-1", 200), within=3.0)

    private_redis.start()  # same port, no persistence: every key and script is gone

    private_store.ping(timeout=1.0)
    assert next_seq(private_store, "conv-1") is None  # reloads the flushed script
    assert next_seq(private_store, "conv-1") is None
    private_store.init_seq("conv-1", 5000, 6000)
    assert next_seq(private_store, "conv-1") == (5001, 6000)


@integration
def test_redis_hung_raises_backend_unavailable_within_the_timeouts(
    private_redis: PrivateRedis, private_store: RedisSequenceStore
) -> None:
    private_store.init_seq("conv-1", 0, 100)
    assert next_seq(private_store, "conv-1") == (1, 100)
    timed_out = fresh("conv-1")

    private_redis.pause()
    try:
        raises_unavailable_quickly(lambda: private_store.ping(timeout=0.3), within=1.0)
        raises_unavailable_quickly(lambda: private_store.assign_seqs([timed_out], TTL), within=3.0)
    finally:
        private_redis.resume()

    # The timed-out assignment may still have run once the server woke up:
    # sent again, it gets seq 2 either way (recorded then, or new now), and
    # the next message seq 3, never a repeat nor a gap.
    [again] = private_store.assign_seqs([timed_out], TTL)
    assert again is not None
    assert (again.seq, again.msg_id, again.ts) == (2, timed_out.msg_id, timed_out.ts)
    assert next_seq(private_store, "conv-1") == (3, 100)


@integration
def test_assign_seqs_survives_a_script_cache_flush_in_one_pass(
    private_redis: PrivateRedis, private_store: RedisSequenceStore
) -> None:
    private_store.init_seq("conv-1", 0, 100)
    private_store.init_seq("conv-2", 0, 100)
    assert next_seq(private_store, "conv-1") == (1, 100)

    private_redis.command("SCRIPT", "FLUSH")
    private_redis.command("CONFIG", "RESETSTAT")
    batch = [fresh("conv-1"), fresh("conv-2"), fresh("conv-1")]
    assert counters(private_store.assign_seqs(batch, TTL)) == [(2, 100), (1, 100), (3, 100)]
    stats = private_redis.command("INFO", "commandstats")
    assert isinstance(stats, dict)
    loads = [stat["calls"] for name, stat in stats.items() if name.startswith("cmdstat_script")]
    assert loads == [1]  # one SCRIPT LOAD for the whole batch

    private_redis.command("CONFIG", "RESETSTAT")
    batch = [fresh("conv-2"), fresh("conv-1")]
    assert counters(private_store.assign_seqs(batch, TTL)) == [(2, 100), (4, 100)]
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


@integration
def test_redis_lost_reply_is_reported_not_retried(
    private_redis: PrivateRedis, settings: Settings
) -> None:
    relay = ReplyDroppingRelay(private_redis.port)
    store = RedisSequenceStore(settings.replace(redis_url=relay.url))
    try:
        # Open the pooled connection and load the script first, so that the
        # reply dropped below is the assignment's own, not a NOSCRIPT.
        store.init_seq("warm-up", 0, 100)
        next_seq(store, "warm-up")
        store.init_seq("conv-1", 0, 100)

        lost = SeqRequest("conv-1", "alice:c1", "msg-1", 1)
        relay.drop_next_reply.set()
        with pytest.raises(BackendUnavailable):
            store.assign_seqs([lost], TTL)
        # It ran exactly once: a retry would have answered with the sender's
        # own message as an earlier duplicate.
        assert private_redis.command("HGET", seq_key("conv-1"), "seq") == "1"
        assert store.assign_seqs([lost], TTL) == [SeqAssignment(1, 0, "msg-1", 1, duplicate=True)]
        assert next_seq(store, "conv-1") == (2, 100)

        batch = [SeqRequest("conv-1", f"alice:c{n}", f"msg-{n}", n) for n in (3, 4)]
        relay.drop_next_reply.set()
        with pytest.raises(BackendUnavailable):
            store.assign_seqs(batch, TTL)
        assert private_redis.command("HGET", seq_key("conv-1"), "seq") == "4"
        assert store.assign_seqs(batch, TTL) == [
            SeqAssignment(3, 0, "msg-3", 3, duplicate=True),
            SeqAssignment(4, 0, "msg-4", 4, duplicate=True),
        ]
    finally:
        store.close()
        relay.close()
