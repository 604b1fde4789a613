"""Redis adapter of the sequence store: seq counters, dedup claims, small caches.

Every operation is one round trip: the read-modify-write ones run as Lua
scripts (atomic on the server), ``incr_seqs`` pipelines its script calls.

redis-py retries are switched off on purpose. A command whose reply was lost
may still have run on the server: retrying ``incr_seq`` would hand out a seq
twice as far (a gap), retrying ``claim_dedup`` would report the sender's own
claim as an earlier one. The caller gets ``BackendUnavailable`` instead and the
client retries with the same CID, as the contract allows.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.commands.core import Script
from redis.exceptions import NoScriptError, RedisError
from redis.retry import Retry

from imchat.backends.base import (
    BackendUnavailable,
    SeqAssignment,
    SeqCounter,
    SeqRequest,
    SequenceStore,
)
from imchat.config import Settings

# ------------------------------------------------------------------ keys
# Every key imchat writes to Redis, in one place. The conversation id sits in
# a hash tag ``{...}`` so that a Redis Cluster keeps all of one conversation's
# keys on one slot (multi-key scripts and pipelines per conversation stay legal).
KEY_PREFIX = "imchat:"
SEQ_PREFIX = KEY_PREFIX + "seq:"
DEDUP_PREFIX = KEY_PREFIX + "dedup:"
CACHE_PREFIX = KEY_PREFIX + "cache:"


def seq_key(conversation_id: str) -> str:
    """The hash holding a conversation's ``seq`` and ``ceiling``."""
    return f"{SEQ_PREFIX}{{{conversation_id}}}"


def dedup_key(key: str) -> str:
    return DEDUP_PREFIX + key


def cache_key(key: str) -> str:
    return CACHE_PREFIX + key


# --------------------------------------------------------------- scripts
# A counter exists when its hash has a ``seq`` field. Checking the field (not
# just the key) means a hash damaged by hand is treated as lost, and repaired
# by init_seq, rather than restarted at 1 by HINCRBY.
INCR_SEQ_LUA = """
if redis.call('HEXISTS', KEYS[1], 'seq') == 0 then
  return false
end
local seq = redis.call('HINCRBY', KEYS[1], 'seq', 1)
local ceiling = tonumber(redis.call('HGET', KEYS[1], 'ceiling')) or 0
return {seq, ceiling}
"""

# The bus consumer's one call per message: the earlier assignment of the
# sender's client id, or the next seq recorded under it, atomically, so a
# batch replayed after a crash or a lost reply reuses its seqs (no gap, no
# repeat). The dedup key carries the conversation's hash tag (same slot).
ASSIGN_SEQ_LUA = """
local earlier = redis.call('GET', KEYS[2])
if earlier then
  return {0, 0, earlier}
end
if redis.call('HEXISTS', KEYS[1], 'seq') == 0 then
  return false
end
local seq = redis.call('HINCRBY', KEYS[1], 'seq', 1)
local ceiling = tonumber(redis.call('HGET', KEYS[1], 'ceiling')) or 0
local value = ARGV[1] .. '|' .. seq .. '|' .. ARGV[2]
redis.call('SET', KEYS[2], value, 'EX', ARGV[3])
return {seq, ceiling, value}
"""

INIT_SEQ_LUA = """
if redis.call('HEXISTS', KEYS[1], 'seq') == 1 then
  return 0
end
redis.call('HSET', KEYS[1], 'seq', ARGV[1], 'ceiling', ARGV[2])
return 1
"""

RAISE_CEILING_LUA = """
if redis.call('HEXISTS', KEYS[1], 'seq') == 0 then
  return 0
end
local ceiling = tonumber(redis.call('HGET', KEYS[1], 'ceiling')) or 0
if tonumber(ARGV[1]) > ceiling then
  redis.call('HSET', KEYS[1], 'ceiling', ARGV[1])
  return 1
end
return 0
"""

RELEASE_DEDUP_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""

SOCKET_TIMEOUT_SECONDS = 2.0
HEALTH_CHECK_INTERVAL_SECONDS = 30


@contextmanager
def _unavailable_on_error(operation: str) -> Iterator[None]:
    """Turn any redis-py (or socket) failure into the backend-neutral BackendUnavailable."""
    try:
        yield
    except (RedisError, OSError) as exc:
        raise BackendUnavailable("redis", f"{operation}: {type(exc).__name__}: {exc}") from exc


def assign_key(request: SeqRequest) -> str:
    """The dedup key of an assignment, in its conversation's slot."""
    return f"{DEDUP_PREFIX}{{{request.conversation_id}}}:{request.dedup_key}"


def _assignment(reply: Any) -> SeqAssignment | None:
    if reply is None:
        return None
    seq, ceiling, value = reply
    earlier = SeqAssignment.decode(value.decode() if isinstance(value, bytes) else value)
    if int(seq) == 0:
        return earlier
    return SeqAssignment(int(seq), int(ceiling), earlier.msg_id, earlier.ts, duplicate=False)


def _counter(reply: Any) -> SeqCounter | None:
    """The INCR_SEQ_LUA reply: None for an unknown counter, else [seq, ceiling]."""
    if reply is None:
        return None
    seq, ceiling = reply
    return SeqCounter(int(seq), int(ceiling))


class RedisSequenceStore(SequenceStore):
    """Sequence numbers, dedup claims and caches in Redis (see ``SequenceStore``)."""

    def __init__(self, settings: Settings) -> None:
        self._client = redis.Redis.from_url(
            settings.redis_url,
            decode_responses=True,
            socket_timeout=SOCKET_TIMEOUT_SECONDS,
            socket_connect_timeout=SOCKET_TIMEOUT_SECONDS,
            health_check_interval=HEALTH_CHECK_INTERVAL_SECONDS,
            # Explicit: redis-py's default differs between from_url (none) and Redis() (10).
            retry=Retry(NoBackoff(), 0),
        )
        self._incr_script = self._client.register_script(INCR_SEQ_LUA)
        self._assign_script = self._client.register_script(ASSIGN_SEQ_LUA)
        self._init_script = self._client.register_script(INIT_SEQ_LUA)
        self._raise_script = self._client.register_script(RAISE_CEILING_LUA)
        self._release_script = self._client.register_script(RELEASE_DEDUP_LUA)

    # ------------------------------------------------------------ sequences
    def incr_seq(self, conversation_id: str) -> SeqCounter | None:
        with _unavailable_on_error("incr_seq"):
            return _counter(self._incr_script(keys=[seq_key(conversation_id)]))

    def incr_seqs(self, conversation_ids: Sequence[str]) -> list[SeqCounter | None]:
        """Hand out the next seq of each conversation in one pipelined round trip.

        An id may appear several times; its occurrences get increasing seqs.
        """
        results: list[SeqCounter | None] = [None] * len(conversation_ids)
        pending = list(range(len(conversation_ids)))
        with _unavailable_on_error("incr_seqs"):
            # Two passes at most: the second only when the server had lost the
            # script (restart, SCRIPT FLUSH). A NOSCRIPT reply means that call
            # did not run, so running it again hands out no seq twice.
            for _ in range(2):
                keys = [seq_key(conversation_ids[i]) for i in pending]
                replies = self._evalsha_pipelined(self._incr_script, keys)
                pending = self._collect_counters(pending, replies, results)
                if not pending:
                    return results
                self._incr_script.sha = self._client.script_load(INCR_SEQ_LUA)
        raise BackendUnavailable("redis", "incr_seqs: the server keeps losing the script")

    def assign_seqs(
        self, requests: Sequence[SeqRequest], dedup_ttl_seconds: int
    ) -> list[SeqAssignment | None]:
        """All requests in one pipelined round trip (two if the script was lost)."""
        replies: list[Any] = [None] * len(requests)
        todo = list(range(len(requests)))
        with _unavailable_on_error("assign_seqs"):
            for _ in range(2):
                pipe = self._client.pipeline(transaction=False)
                for i in todo:
                    r = requests[i]
                    keys = (seq_key(r.conversation_id), assign_key(r))
                    pipe.evalsha(
                        self._assign_script.sha, 2, *keys, r.msg_id, r.ts, dedup_ttl_seconds
                    )
                for i, reply in zip(todo, pipe.execute(raise_on_error=False), strict=True):
                    replies[i] = reply
                # A NOSCRIPT call did not run: run just those again.
                todo = [i for i in todo if isinstance(replies[i], NoScriptError)]
                if not todo:
                    break
                self._assign_script.sha = self._client.script_load(ASSIGN_SEQ_LUA)
            for reply in replies:
                if isinstance(reply, Exception):
                    raise reply
            return [_assignment(reply) for reply in replies]

    def _evalsha_pipelined(self, script: Script, keys: Sequence[str]) -> list[Any]:
        # EVALSHA by hand: redis-py's Script in a pipeline first sends SCRIPT
        # EXISTS, a second round trip on every batch.
        pipe = self._client.pipeline(transaction=False)
        for key in keys:
            pipe.evalsha(script.sha, 1, key)
        return pipe.execute(raise_on_error=False)

    @staticmethod
    def _collect_counters(
        indexes: list[int], replies: list[Any], results: list[SeqCounter | None]
    ) -> list[int]:
        """Store each reply at its index; return the indexes to run again (NOSCRIPT)."""
        again: list[int] = []
        for index, reply in zip(indexes, replies, strict=True):
            if isinstance(reply, NoScriptError):
                again.append(index)
            elif isinstance(reply, Exception):
                raise reply
            else:
                results[index] = _counter(reply)
        return again

    def init_seq(self, conversation_id: str, seq: int, ceiling: int) -> None:
        with _unavailable_on_error("init_seq"):
            self._init_script(keys=[seq_key(conversation_id)], args=[seq, ceiling])

    def raise_ceiling(self, conversation_id: str, ceiling: int) -> None:
        with _unavailable_on_error("raise_ceiling"):
            self._raise_script(keys=[seq_key(conversation_id)], args=[ceiling])

    # ---------------------------------------------------------------- dedup
    def claim_dedup(self, key: str, value: str, ttl_seconds: int) -> str | None:
        # SET NX GET (Redis >= 7.0): sets only if absent and returns the value
        # that was there, in one atomic command.
        with _unavailable_on_error("claim_dedup"):
            earlier = self._client.set(dedup_key(key), value, ex=ttl_seconds, nx=True, get=True)
        return None if earlier is None else str(earlier)

    def release_dedup(self, key: str, value: str) -> None:
        with _unavailable_on_error("release_dedup"):
            self._release_script(keys=[dedup_key(key)], args=[value])

    # ---------------------------------------------------------------- cache
    def cache_get(self, key: str) -> str | None:
        with _unavailable_on_error("cache_get"):
            value = self._client.get(cache_key(key))
        return None if value is None else str(value)

    def cache_set(self, key: str, value: str, ttl_seconds: int) -> None:
        with _unavailable_on_error("cache_set"):
            self._client.set(cache_key(key), value, ex=ttl_seconds)

    def cache_delete(self, key: str) -> None:
        with _unavailable_on_error("cache_delete"):
            self._client.delete(cache_key(key))

    # ------------------------------------------------------------ lifecycle
    def ping(self, timeout: float = 2.0) -> None:
        """Raise BackendUnavailable unless Redis answers PING within ``timeout``.

        Waits on the reply by hand: the client's socket timeout is fixed at
        construction, a readiness probe wants its own (connecting is still
        bounded by the connect timeout).
        """
        pool = self._client.connection_pool
        with _unavailable_on_error("ping"):
            conn = pool.get_connection()
            try:
                conn.send_command("PING", check_health=False)
                if not conn.can_read(timeout=timeout):
                    conn.disconnect()  # drop the late PONG with the socket
                    raise BackendUnavailable("redis", f"ping: no answer within {timeout:g}s")
                reply = conn.read_response()
            finally:
                pool.release(conn)
        if reply not in ("PONG", b"PONG", True):
            raise BackendUnavailable("redis", f"ping: unexpected reply {reply!r}")

    def close(self) -> None:
        self._client.close()
        self._client.connection_pool.disconnect()
