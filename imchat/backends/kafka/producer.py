"""The producer side of the Kafka bus: one producer per process, the OS thread
that serves its delivery reports, and its replacement when it is lost."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from typing import Any

import gevent
import gevent.event
from confluent_kafka import KafkaError, KafkaException, Message, Producer

from imchat.backends.base import BackendUnavailable
from imchat.backends.kafka.client import BACKEND, describe, gevent_patched, run_blocking

log = logging.getLogger("imchat.bus.kafka")

# The broker no longer knows this idempotent producer's id, epoch or sequence
# (a broker restarted or its state expired): librdkafka does not always flag
# these fatal, yet the producer keeps failing with them. Start a fresh one.
PRODUCER_STATE_LOST = frozenset(
    {
        KafkaError.PRODUCER_FENCED,
        KafkaError.INVALID_PRODUCER_EPOCH,
        KafkaError.UNKNOWN_PRODUCER_ID,
        KafkaError.OUT_OF_ORDER_SEQUENCE_NUMBER,
        KafkaError.INVALID_PRODUCER_ID_MAPPING,
    }
)


class DeliveryWait:
    """Collects the delivery reports of one publish (or one batch).

    ``on_delivery`` runs in the producer's poll thread; ``wait`` in the
    publishing greenlet or thread.
    """

    def __init__(self, expected: int) -> None:
        self.remaining = expected
        self.error: str | None = None
        self.fatal = False
        if gevent_patched():
            # The report must reach the hub of the waiting greenlet through the
            # loop's thread-safe callback queue: gevent objects are not thread-safe.
            self._hub: Any = gevent.get_hub()
            self._done: gevent.event.Event | threading.Event = gevent.event.Event()
            self._lock: threading.Lock | None = None
        else:
            self._hub = None
            self._done = threading.Event()
            self._lock = threading.Lock()

    def on_delivery(self, err: KafkaError | None, msg: Message) -> None:
        """librdkafka's per-record callback (poll thread)."""
        try:
            if self._hub is not None:
                self._hub.loop.run_callback_threadsafe(self._count, err)
            else:
                assert self._lock is not None
                with self._lock:
                    self._count(err)
        except Exception:  # never let a report break the poll loop
            log.exception("kafka delivery report lost")

    def _count(self, err: KafkaError | None) -> None:
        if err is not None and self.error is None:
            self.error = describe(err)
            self.fatal = err.fatal() or err.code() in PRODUCER_STATE_LOST
        self.remaining -= 1
        # The first error settles the whole wait: the caller retries everything.
        if self.remaining <= 0 or err is not None:
            self._done.set()

    def wait(self, timeout: float) -> None:
        """Return once every record is durable; raise BackendUnavailable otherwise."""
        if not self._done.wait(timeout):
            raise BackendUnavailable(BACKEND, f"no delivery report within {timeout:g}s")
        if self.error is not None:
            raise BackendUnavailable(BACKEND, f"delivery failed: {self.error}")


class PolledProducer:
    """A Producer plus the one OS thread that serves its delivery reports."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.producer = Producer(config)
        self.pid = os.getpid()
        self._running = True
        self._finished: Any
        if gevent_patched():
            # After patch_all threading.Thread is a greenlet: the hub's
            # threadpool is where real OS threads live.
            self._finished = gevent.get_hub().threadpool.spawn(self._serve)
        else:
            thread = threading.Thread(target=self._serve, name="kafka-producer-poll", daemon=True)
            thread.start()
            self._finished = thread

    def _serve(self) -> None:
        while self._running:
            self.producer.poll(0.1)

    def stop(self, flush_timeout: float) -> int:
        """Stop the poll thread, then flush; return how many records were left unsent."""
        self._running = False
        if isinstance(self._finished, threading.Thread):
            self._finished.join(timeout=1.0)
        else:
            self._finished.wait(timeout=1.0)
        return run_blocking(self.producer.flush, flush_timeout)


class Publisher:
    """The bus's producer, built lazily: on first use, again after a fork (its
    threads stayed in the parent) and after a fatal error."""

    def __init__(self, config: dict[str, Any], prefix: str, delivery_timeout: float) -> None:
        self.config = config
        self.prefix = prefix
        self.delivery_timeout = delivery_timeout
        self._lock = threading.Lock()
        self._polled: PolledProducer | None = None

    def _producer(self) -> PolledProducer:
        with self._lock:
            polled = self._polled
            if polled is None or polled.pid != os.getpid():
                polled = self._polled = PolledProducer(self.config)
            return polled

    def publish_many(self, records: Sequence[tuple[str, str, bytes]]) -> None:
        """Produce every record, then wait once for all their delivery reports."""
        if not records:
            return
        polled = self._producer()
        wait = DeliveryWait(len(records))
        try:
            for topic, key, value in records:
                polled.producer.produce(
                    self.prefix + topic, value, key, on_delivery=wait.on_delivery
                )
        except BufferError as exc:
            raise BackendUnavailable(BACKEND, f"producer queue full: {exc}") from exc
        except KafkaException as exc:
            raise BackendUnavailable(BACKEND, f"produce failed: {exc}") from exc
        try:
            # librdkafka gives up at delivery_timeout: its report comes before this.
            wait.wait(self.delivery_timeout + 1.0)
        finally:
            if wait.fatal:
                self._discard(polled)

    def _discard(self, polled: PolledProducer) -> None:
        # A fatal error (e.g. of the idempotence state) leaves the producer
        # unusable: the next publish builds a fresh one.
        with self._lock:
            if self._polled is polled:
                self._polled = None
        polled.stop(flush_timeout=0)

    def close(self, flush_timeout: float) -> None:
        """Flush what is in flight (bounded) and stop the poll thread."""
        with self._lock:
            polled, self._polled = self._polled, None
        if polled is not None and polled.pid == os.getpid():
            unsent = polled.stop(flush_timeout)
            if unsent:
                log.warning("kafka producer closed with %d record(s) unsent", unsent)
