"""Redis adapter of the sequence store: seq counters and their dedup keys.

Every operation is one round trip: the read-modify-write ones run as Lua
scripts (atomic on the server), ``assign_seqs`` pipelines its script calls.
Its client never retries (see ``imchat.backends.redis_client``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from redis.exceptions import NoScriptError

from imchat.backends import redis_client
from imchat.backends.base import SeqAssignment, SeqRequest, SequenceStore
from imchat.backends.redis_client import KEY_PREFIX, unavailable_on_error
from imchat.config import Settings

# ------------------------------------------------------------------ keys
# The conversation id sits in a hash tag ``{...}`` so that a Redis Cluster
# keeps all of one conversation's keys on one slot (multi-key scripts and
# pipelines per conversation stay legal).
SEQ_PREFIX = KEY_PREFIX + "seq:"
DEDUP_PREFIX = KEY_PREFIX + "dedup:"


def seq_key(conversation_id: str) -> str:
    """The hash holding a conversation's ``seq`` and ``ceiling``."""
    return f"{SEQ_PREFIX}{{{conversation_id}}}"


# --------------------------------------------------------------- scripts
# A counter exists when its hash has a ``seq`` field. Checking the field (not
# just the key) means a hash damaged by hand is treated as lost, and repaired
# by init_seq, rather than restarted at 1 by HINCRBY.
#
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


class RedisSequenceStore(SequenceStore):
    """Sequence numbers and their dedup keys in Redis (see ``SequenceStore``)."""

    def __init__(self, settings: Settings) -> None:
        self._client = redis_client.connect(settings.redis_url)
        self._assign_script = self._client.register_script(ASSIGN_SEQ_LUA)
        self._init_script = self._client.register_script(INIT_SEQ_LUA)
        self._raise_script = self._client.register_script(RAISE_CEILING_LUA)

    def assign_seqs(
        self, requests: Sequence[SeqRequest], dedup_ttl_seconds: int
    ) -> list[SeqAssignment | None]:
        """All requests in one pipelined round trip (two if the script was lost).

        EVALSHA by hand: redis-py's Script in a pipeline first sends SCRIPT
        EXISTS, a second round trip on every batch.
        """
        replies: list[Any] = [None] * len(requests)
        todo = list(range(len(requests)))
        with unavailable_on_error("assign_seqs"):
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
                # A NOSCRIPT call did not run (the server restarted or flushed
                # its scripts): run just those again, no seq is handed out twice.
                todo = [i for i in todo if isinstance(replies[i], NoScriptError)]
                if not todo:
                    break
                self._assign_script.sha = self._client.script_load(ASSIGN_SEQ_LUA)
            for reply in replies:
                if isinstance(reply, Exception):
                    raise reply
            return [_assignment(reply) for reply in replies]

    def init_seq(self, conversation_id: str, seq: int, ceiling: int) -> None:
        with unavailable_on_error("init_seq"):
            self._init_script(keys=[seq_key(conversation_id)], args=[seq, ceiling])

    def raise_ceiling(self, conversation_id: str, ceiling: int) -> None:
        with unavailable_on_error("raise_ceiling"):
            self._raise_script(keys=[seq_key(conversation_id)], args=[ceiling])

    def ping(self, timeout: float = 2.0) -> None:
        redis_client.ping(self._client, timeout)

    def close(self) -> None:
        redis_client.close(self._client)
