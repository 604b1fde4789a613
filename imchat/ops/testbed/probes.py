"""Is a service answering on 127.0.0.1? Each is asked through imchat's own client for it.

A probe never raises and never waits much longer than PROBE_TIMEOUT: a port
nobody listens on answers at once, a hung service costs one timeout.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Callable

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from imchat.backends.etcd.probe import endpoint_health
from imchat.ops.testbed.settings import HOST, PROBE_TIMEOUT, Ports


def port_open(port: int) -> bool:
    """Something accepts TCP connections on 127.0.0.1:``port``."""
    try:
        with socket.create_connection((HOST, port), timeout=PROBE_TIMEOUT):
            return True
    except OSError:
        return False


def redis_client(port: int) -> redis.Redis:
    return redis.Redis(
        host=HOST,
        port=port,
        socket_connect_timeout=PROBE_TIMEOUT,
        socket_timeout=PROBE_TIMEOUT,
        retry=Retry(NoBackoff(), 0),  # one attempt: a down Redis is the answer
    )


def redis_ping(port: int) -> bool:
    """Redis answers PING."""
    client = redis_client(port)
    try:
        return bool(client.ping())
    except (redis.RedisError, OSError):
        return False
    finally:
        client.close()


def redis_pid(port: int) -> int | None:
    """The process id the Redis on ``port`` reports, None when it does not answer."""
    client = redis_client(port)
    try:
        return int(client.info("server")["process_id"])
    except (redis.RedisError, OSError, KeyError, ValueError):
        return None
    finally:
        client.close()


def redis_shutdown(port: int) -> None:
    """SHUTDOWN NOSAVE to the Redis on ``port`` (what ``redis-cli shutdown nosave`` sends)."""
    client = redis_client(port)
    with contextlib.suppress(redis.RedisError, OSError):
        client.shutdown(nosave=True)
    client.close()


def mariadb_ok(port: int) -> bool:
    """MariaDB lets root@127.0.0.1 in without a password and answers ``select 1``,
    as the tests connect."""
    timeout = int(PROBE_TIMEOUT)
    engine = create_engine(
        f"mysql+pymysql://root@{HOST}:{port}/",
        poolclass=NullPool,  # a probe leaves no connection behind
        connect_args={"connect_timeout": timeout, "read_timeout": timeout},
    )
    try:
        with engine.connect() as conn:
            conn.execute(text("select 1"))
        return True
    except Exception:  # any driver error means "not answering as the tests need"
        return False
    finally:
        engine.dispose()


def etcd_healthy(port: int) -> bool:
    """etcd's /health says true (the router's own health check)."""
    return endpoint_health(f"http://{HOST}:{port}", PROBE_TIMEOUT) is None


def kafka_up(port: int) -> bool:
    """The broker answers a metadata request of the bus adapter. The port is
    tried first: librdkafka would log every refused connection to stderr."""
    if not port_open(port):
        return False
    from imchat.backends.base import BackendUnavailable
    from imchat.backends.kafka import KafkaBus
    from imchat.config import Settings

    bus = KafkaBus(Settings(kafka_bootstrap_servers=f"{HOST}:{port}"))
    try:
        bus.ping(PROBE_TIMEOUT)
        return True
    except BackendUnavailable:
        return False
    finally:
        bus.close(flush_timeout=0)


def answering(ports: Ports) -> dict[str, Callable[[], bool]]:
    """Service name -> its probe on the configured port."""
    return {
        "mariadb": lambda: mariadb_ok(ports.mariadb),
        "redis": lambda: redis_ping(ports.redis),
        "etcd": lambda: etcd_healthy(ports.etcd),
        "tansu": lambda: kafka_up(ports.kafka),
    }
