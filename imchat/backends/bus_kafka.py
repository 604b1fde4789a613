"""The Kafka adapter of the message bus (confluent-kafka), gevent-friendly.

confluent-kafka is a C library: ``poll``, ``flush``, ``consume`` and
``list_topics`` block the whole gevent hub while they wait. So:

* the producer is served by ONE real OS thread looping ``producer.poll(0.1)``
  (a thread of the hub's threadpool under gevent, a plain thread otherwise);
  its delivery callbacks hand each report back to the publishing greenlet
  through ``hub.loop.run_callback_threadsafe`` (setting an ``AsyncResult``
  straight from another thread is not safe), or to a ``threading.Event``
  when gevent is not patched in;
* every other blocking call (consume, commit, close, admin calls) runs in
  the hub's threadpool under gevent.

The producer is created lazily, and again after a fork, so that a gunicorn
worker never shares librdkafka's threads with its parent.

Tansu (the Kafka-protocol broker of the test machines) against Apache
Kafka: measured on tansu 0.6.0, Kafka's side from its documentation.

* ``consume(n, timeout)`` waits the whole timeout unless ``n`` records
  arrive (librdkafka, on both), so ``poll_batch`` waits for ONE record and
  then drains what is already buffered without waiting.
* tansu accepts ``min.insync.replicas`` and ``retention.ms`` at topic
  creation without complaint (whether it enforces them was not checked)
  and answers TOPIC_ALREADY_EXISTS like Kafka.
* tansu sends partition-EOF events when ``enable.partition.eof`` is on;
  it is off here and such events are skipped anyway.
* joining a group takes about session.timeout.ms / 2 on tansu (~3 s at
  6000 ms, ~1.1 s at 2000 ms) where Kafka waits
  group.initial.rebalance.delay.ms (3 s by default) for a new group; Kafka
  refuses a session timeout under group.min.session.timeout.ms (6000 ms by
  default), which is why 6000 ms is the default here.
* a broker that cannot be reached reaches a consumer through ``error_cb``
  only (librdkafka, on both): ``consume`` just returns nothing.
* tansu lists no internal topics; Kafka lists ``__consumer_offsets``, which
  ``topic_partitions`` leaves out.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

import gevent
import gevent.event
import gevent.monkey
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from imchat.backends.base import BackendUnavailable, BusConsumer, BusRecord, MessageBus
from imchat.config import Settings
from imchat.wire.topics import PRODUCER_CONFIG, TOPICS, TopicSpec

log = logging.getLogger("imchat.bus.kafka")

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


# ------------------------------------------------------------ delivery waits
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


# -------------------------------------------------------------------- bus
class KafkaBus(MessageBus):
    """MessageBus on Kafka: acks=all, idempotent producer, manual-commit consumers."""

    name = "kafka"

    def __init__(
        self,
        settings: Settings,
        *,
        delivery_timeout: float = 5.0,
        admin_timeout: float = 10.0,
        session_timeout_ms: int = 6000,
    ) -> None:
        """``delivery_timeout`` bounds librdkafka's retries of one record
        (message.timeout.ms); ``publish`` waits one second longer for the report."""
        self.settings = settings
        self.delivery_timeout = delivery_timeout
        self.admin_timeout = admin_timeout
        self.session_timeout_ms = session_timeout_ms
        self._lock = threading.Lock()
        self._polled: PolledProducer | None = None
        self._admin: AdminClient | None = None
        self._admin_pid = 0
        # Topic names on the broker are the bus's names behind this prefix.
        self.prefix = settings.kafka_topic_prefix

    # ------------------------------------------------------------ configs
    def _common_config(self) -> dict[str, Any]:
        config = {
            "bootstrap.servers": self.settings.kafka_bootstrap_servers,
            "client.id": self.settings.kafka_client_id,
        }
        if self.settings.kafka_debug:
            config["debug"] = self.settings.kafka_debug
        return config

    def _producer_config(self) -> dict[str, Any]:
        return {
            **self._common_config(),
            **PRODUCER_CONFIG,
            "linger.ms": self.settings.kafka_linger_ms,
            "message.timeout.ms": int(self.delivery_timeout * 1000),
        }

    def _consumer_config(self, group_id: str) -> dict[str, Any]:
        return {
            **self._common_config(),
            "group.id": group_id,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            # Hand over records as soon as one is there: latency over batching.
            "fetch.wait.max.ms": self.settings.kafka_fetch_wait_ms,
            "fetch.min.bytes": 1,
            "session.timeout.ms": self.session_timeout_ms,
            "heartbeat.interval.ms": max(self.session_timeout_ms // 3, 100),
        }

    # ------------------------------------------------------------ producer
    def _producer(self) -> PolledProducer:
        with self._lock:
            polled = self._polled
            if polled is None or polled.pid != os.getpid():
                # None yet, or inherited across a fork: its threads stayed in the parent.
                polled = self._polled = PolledProducer(self._producer_config())
            return polled

    def publish(self, topic: str, key: str, value: bytes) -> None:
        """Return once the record is durable (acks=all); raise BackendUnavailable."""
        self.publish_many([(topic, key, value)])

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
            wait.wait(self.delivery_timeout + 1.0)
        finally:
            if wait.fatal:
                self._discard_producer(polled)

    def _discard_producer(self, polled: PolledProducer) -> None:
        # A fatal error (e.g. of the idempotence state) leaves the producer
        # unusable: the next publish builds a fresh one.
        with self._lock:
            if self._polled is polled:
                self._polled = None
        polled.stop(flush_timeout=0)

    # ------------------------------------------------------------ consumer
    def subscribe(self, topics: Sequence[str], group_id: str) -> BusConsumer:
        """A new member of ``group_id``: reads from the committed offsets, else the start."""
        return KafkaConsumer(self._consumer_config(group_id), list(topics), self.prefix)

    # ------------------------------------------------------------ admin
    def _admin_client(self) -> AdminClient:
        with self._lock:
            if self._admin is None or self._admin_pid != os.getpid():
                self._admin = AdminClient(self._common_config())
                self._admin_pid = os.getpid()
            return self._admin

    def ensure_topics(
        self, specs: Iterable[TopicSpec], replication_factor: int, min_insync_replicas: int
    ) -> list[str]:
        """Create the missing topics with their partitions and config; return those created."""
        new_topics = [
            NewTopic(
                self.prefix + spec.name,
                num_partitions=spec.partitions,
                replication_factor=replication_factor,
                config=spec.config(min_insync_replicas),
            )
            for spec in specs
        ]
        if not new_topics:
            return []
        return run_blocking(self._create_topics, self._admin_client(), new_topics)

    def _create_topics(self, admin: AdminClient, new_topics: list[NewTopic]) -> list[str]:
        # ``admin`` stays referenced while its futures resolve: a client
        # collected too early may leave them unresolved.
        futures = admin.create_topics(
            new_topics, operation_timeout=self.admin_timeout, request_timeout=self.admin_timeout
        )
        created: list[str] = []
        for name, future in futures.items():
            try:
                future.result(timeout=self.admin_timeout + 1)
            except KafkaException as exc:
                if exc.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS:
                    continue
                detail = describe(exc.args[0])
                raise BackendUnavailable(BACKEND, f"cannot create topic {name}: {detail}") from exc
            except TimeoutError as exc:
                raise BackendUnavailable(BACKEND, f"no answer creating topic {name}") from exc
            created.append(name.removeprefix(self.prefix))
        return created

    def topic_partitions(self) -> dict[str, int]:
        """Partition count of every topic under the prefix (named without it),
        internal ones (``__consumer_offsets``) left out."""
        return partitions_by_topic(self._metadata(self.admin_timeout), self.prefix)

    def ping(self, timeout: float = 2.0) -> None:
        """Raise BackendUnavailable unless the broker answers a metadata request in time."""
        self._metadata(timeout)

    def _metadata(self, timeout: float) -> Any:
        try:
            return run_blocking(self._admin_client().list_topics, None, timeout)
        except KafkaException as exc:
            raise BackendUnavailable(BACKEND, describe(exc.args[0])) from exc

    def close(self, flush_timeout: float = 5.0) -> None:
        """Flush what is in flight (bounded), stop the poll thread, drop the clients."""
        with self._lock:
            polled, self._polled = self._polled, None
            self._admin = None
        if polled is not None and polled.pid == os.getpid():
            unsent = polled.stop(flush_timeout)
            if unsent:
                log.warning("kafka producer closed with %d record(s) unsent", unsent)


class KafkaConsumer(BusConsumer):
    """One member of a consumer group; offsets are committed only by ``commit``."""

    def __init__(self, config: dict[str, Any], topics: list[str], prefix: str = "") -> None:
        self._consumer = Consumer({**config, "error_cb": self._on_error})
        self._prefix = prefix
        # (topic, partition) -> the next offset to read, for records handed out.
        self._returned: dict[tuple[str, int], int] = {}
        # A link failure seen during the current poll (set from inside consume()).
        self._link_error: KafkaError | None = None
        self._consumer.subscribe(
            [prefix + t for t in topics], on_revoke=self._forget, on_lost=self._forget
        )

    def _forget(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Partitions taken away in a rebalance: their new owner starts from the
        # last commit, so what was handed out here is seen again (at-least-once)
        # and committing it now would be refused anyway.
        for tp in partitions:
            self._returned.pop((tp.topic, tp.partition), None)

    def _on_error(self, err: KafkaError) -> None:
        # librdkafka reports a lost broker here, never as a consumed message.
        if err.code() in TRANSPORT_ERRORS:
            self._link_error = err

    def poll_batch(self, max_records: int, timeout: float) -> list[BusRecord]:
        """Up to ``max_records`` records, waiting at most ``timeout`` seconds for the first.

        Raises BackendUnavailable when nothing came and the broker could not be
        reached during the wait (librdkafka keeps reconnecting: poll again later).
        """
        self._link_error = None
        messages = run_blocking(self._fetch, max_records, timeout)
        records: list[BusRecord] = []
        for msg in messages:
            err = msg.error()
            if err is None:
                records.append(self._record(msg))
            elif err.code() in TRANSPORT_ERRORS:
                self._link_error = err
            elif err.code() != KafkaError._PARTITION_EOF:
                log.warning("kafka consumer skipped an error event: %s", describe(err))
        # Records already fetched are handed out even when the link then failed:
        # librdkafka has moved past them, and raising would hide them until a restart.
        if self._link_error is not None and not records:
            raise BackendUnavailable(BACKEND, describe(self._link_error))
        return records

    def _fetch(self, max_records: int, timeout: float) -> list[Message]:
        # consume(n, t) waits the whole timeout unless n records come: wait for
        # the first only, then take what is already buffered without waiting.
        messages = self._consumer.consume(1, timeout)
        if messages and max_records > 1:
            messages += self._consumer.consume(max_records - 1, 0)
        return messages

    def lag(self) -> int:
        """High watermark minus position over the assigned partitions, from the
        offsets librdkafka already has (no broker round trip)."""
        assigned = self._consumer.assignment()
        behind = 0
        for tp in self._consumer.position(assigned) if assigned else []:
            try:
                _, high = self._consumer.get_watermark_offsets(tp, cached=True)
            except KafkaException:
                continue
            if tp.offset >= 0 and high >= 0:
                behind += max(high - tp.offset, 0)
        return behind

    def _record(self, msg: Message) -> BusRecord:
        topic, partition, offset = str(msg.topic()), msg.partition() or 0, msg.offset() or 0
        self._returned[(topic, partition)] = offset + 1
        value = bytes(msg.value() or b"")
        name = topic.removeprefix(self._prefix)
        return BusRecord(name, partition, offset, text_key(msg.key()), value)

    def commit(self) -> None:
        """Commit the offsets of every record returned so far, synchronously."""
        if not self._returned:
            return
        offsets = [TopicPartition(t, p, o) for (t, p), o in self._returned.items()]
        try:
            run_blocking(self._commit, offsets)
        except KafkaException as exc:
            raise BackendUnavailable(BACKEND, f"commit failed: {describe(exc.args[0])}") from exc
        self._returned = {}

    def _commit(self, offsets: list[TopicPartition]) -> None:
        # A synchronous commit reports a failed partition in the list it returns.
        for tp in self._consumer.commit(offsets=offsets, asynchronous=False) or []:
            if tp.error is not None:
                raise KafkaException(tp.error)

    def close(self) -> None:
        """Leave the group at once (its partitions go to the other members)."""
        self._returned = {}
        run_blocking(self._consumer.close)


def partitions_by_topic(metadata: Any, prefix: str) -> dict[str, int]:
    """Partition count of every topic of a ``list_topics`` answer under ``prefix``,
    named without it; internal topics (``__consumer_offsets``) and topics the
    broker reports in error are left out. The bus and the infra check both list
    topics this way."""
    return {
        name.removeprefix(prefix): len(topic.partitions)
        for name, topic in metadata.topics.items()
        if name.startswith(prefix) and not name.startswith("__") and topic.error is None
    }


def text_key(raw: str | bytes | None) -> str:
    """A record key as the bus's str (keys are user and conversation ids)."""
    if isinstance(raw, bytes):
        return raw.decode("utf-8", "replace")
    return raw or ""


def create_topics(settings: Settings) -> list[str]:
    """Create imchat's topics on the configured broker; ``python -m imchat create-topics``."""
    bus = KafkaBus(settings)
    try:
        return bus.ensure_topics(
            TOPICS, settings.kafka_replication_factor, settings.kafka_min_insync_replicas
        )
    finally:
        bus.close()
