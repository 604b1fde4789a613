"""What the Redis adapters share: how a client is built, errors, the readiness ping.

redis-py retries are switched off on purpose. A command whose reply was lost
may still have run on the server: retrying a seq assignment would hand out a
seq twice as far (a gap) or report the sender's own message as an earlier
one. The caller gets ``BackendUnavailable`` instead and the client retries
with the same CID, as the contract allows.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import redis
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.retry import Retry

from imchat.backends.base import BackendUnavailable

# Every key imchat writes to Redis starts with this prefix; each adapter
# names its own keys below it (``seq:``, ``dedup:``, ``cache:``).
KEY_PREFIX = "imchat:"

SOCKET_TIMEOUT_SECONDS = 2.0
HEALTH_CHECK_INTERVAL_SECONDS = 30


def connect(url: str) -> redis.Redis:
    """A client whose every call fails within the socket timeouts and is never retried."""
    return redis.Redis.from_url(
        url,
        decode_responses=True,
        socket_timeout=SOCKET_TIMEOUT_SECONDS,
        socket_connect_timeout=SOCKET_TIMEOUT_SECONDS,
        health_check_interval=HEALTH_CHECK_INTERVAL_SECONDS,
        # Explicit: redis-py's default differs between from_url (none) and Redis() (10).
        retry=Retry(NoBackoff(), 0),
    )


@contextmanager
def unavailable_on_error(operation: str) -> Iterator[None]:
    """Turn any redis-py (or socket) failure into the backend-neutral BackendUnavailable."""
    try:
        yield
    except (RedisError, OSError) as exc:
        raise BackendUnavailable("redis", f"{operation}: {type(exc).__name__}: {exc}") from exc


def ping(client: redis.Redis, timeout: float) -> None:
    """Raise BackendUnavailable unless Redis answers PING within ``timeout``.

    Waits on the reply by hand: the client's socket timeout is fixed at
    construction, a readiness probe wants its own (connecting is still
    bounded by the connect timeout).
    """
    pool = client.connection_pool
    with unavailable_on_error("ping"):
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


def close(client: redis.Redis) -> None:
    client.close()
    client.connection_pool.disconnect()
