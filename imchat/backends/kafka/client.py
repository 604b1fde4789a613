"""What every Kafka client of the bus shares: its configuration, the mapping
of broker errors to BackendUnavailable, and blocking calls kept off the hub."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import gevent
import gevent.monkey
from confluent_kafka import KafkaError

from imchat.config import Settings
from imchat.wire.topics import PRODUCER_CONFIG

BACKEND = "kafka"
T = TypeVar("T")

# Consumer errors that mean "the broker cannot be reached": raised, not skipped.
TRANSPORT_ERRORS = frozenset({KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN})


def describe(err: Any) -> str:
    """A KafkaError as "NAME: text" (anything else as its str) for BackendUnavailable."""
    if isinstance(err, KafkaError):
        return f"{err.name()}: {err.str()}"
    return str(err)


def gevent_patched() -> bool:
    """True when the process runs under gevent's monkey-patching (gunicorn -k gevent)."""
    return bool(gevent.monkey.is_module_patched("threading"))


def run_blocking(func: Callable[..., T], *args: Any) -> T:
    """Call a blocking librdkafka function without stalling the gevent hub.

    Under gevent the call runs in a real OS thread of the hub's threadpool
    and only the calling greenlet waits; otherwise it is a plain call.
    """
    if gevent_patched():
        result: T = gevent.get_hub().threadpool.apply(func, args)
        return result
    return func(*args)


def common_config(settings: Settings) -> dict[str, Any]:
    """The broker and the client id, for the producer, the consumers and the admin client."""
    config = {
        "bootstrap.servers": settings.kafka_bootstrap_servers,
        "client.id": settings.kafka_client_id,
    }
    if settings.kafka_debug:
        config["debug"] = settings.kafka_debug
    return config


def producer_config(settings: Settings, delivery_timeout: float) -> dict[str, Any]:
    """acks=all and idempotence (``PRODUCER_CONFIG``), retries bounded by ``delivery_timeout``."""
    return {
        **common_config(settings),
        **PRODUCER_CONFIG,
        "linger.ms": settings.kafka_linger_ms,
        "message.timeout.ms": int(delivery_timeout * 1000),
    }


def consumer_config(settings: Settings, group_id: str, session_timeout_ms: int) -> dict[str, Any]:
    """A member of ``group_id`` that commits by hand and starts from the earliest record."""
    return {
        **common_config(settings),
        "group.id": group_id,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        # Hand over records as soon as one is there: latency over batching.
        "fetch.wait.max.ms": settings.kafka_fetch_wait_ms,
        "fetch.min.bytes": 1,
        "session.timeout.ms": session_timeout_ms,
        "heartbeat.interval.ms": max(session_timeout_ms // 3, 100),
    }
