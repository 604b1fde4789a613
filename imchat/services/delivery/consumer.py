"""The bus consumer: polls message and membership records in batches and
delivers them (``records.process_records``), committing offsets after.

Production runs it as its own process (``python -m imchat consume``); the
embedded default runs it in a background thread of the one process.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING

from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from imchat import metrics
from imchat.backends.base import BackendUnavailable, BusConsumer, BusRecord
from imchat.services import event_relay
from imchat.services.delivery.records import process_records
from imchat.wire.topics import DIRECT_MSG, GROUP_MSG, MEMBERSHIP_CHANGE

if TYPE_CHECKING:
    from imchat.container import Services

log = logging.getLogger("imchat.consumer")
TOPICS = (DIRECT_MSG.name, GROUP_MSG.name, MEMBERSHIP_CHANGE.name)
BATCH = 500
# Short waits: latency matters more than fewer, fuller fetches.
POLL_SECONDS = 0.05
RETRY_SECONDS = 0.5
LAG_CHECK_SECONDS = 5.0
RELAY_EVERY_SECONDS = 2.0  # the outbox's relay: events a commit could not publish


def transient(exc: Exception) -> bool:
    """A failure that retrying may cure (a backend down), not one of the data."""
    if isinstance(exc, DBAPIError):
        return isinstance(exc, OperationalError | InterfaceError) or exc.connection_invalidated
    return isinstance(exc, BackendUnavailable | ConnectionError | TimeoutError)


class DeliveryConsumer:
    def __init__(self, services: Services) -> None:
        self.services = services
        self.stopping = threading.Event()
        self._next_lag_check = 0.0
        self._next_relay = 0.0
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name="imchat-consumer", daemon=True)
        self._thread.start()

    def _deliver_one_by_one(self, records: list[BusRecord]) -> None:
        """Deliver what can be, set aside (log) what never can: one bad record
        must not stop delivery for everyone behind it on its partition."""
        for record in records:
            try:
                process_records(self.services, [record])
            except Exception as exc:
                if transient(exc):
                    raise
                metrics.ERRORS.labels("undeliverable", "consumer").inc()
                log.error(
                    "record %s/%d@%d set aside: %r",
                    record.topic,
                    record.partition,
                    record.offset,
                    record.value[:500],
                    exc_info=True,
                )

    def stop(self, timeout: float = 5.0) -> None:
        self.stopping.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def run(self) -> None:
        consumer: BusConsumer | None = None
        while not self.stopping.is_set():
            try:
                if consumer is None:
                    group = self.services.settings.kafka_consumer_group
                    consumer = self.services.bus.subscribe(TOPICS, group)
                self._relay_if_due()
                records = self._poll(consumer)
            except BackendUnavailable as exc:
                # The bus is away: nothing was handed out, so there is nothing
                # to rewind; the same consumer reconnects by itself (a new one
                # may wait a long time to be given partitions again).
                log.warning("bus unavailable while polling: %s", exc)
                self.stopping.wait(RETRY_SECONDS)
                continue
            if not records:
                continue
            try:
                self._deliver(consumer, records)
            except Exception:
                log.exception("delivery batch failed; rewinding to the last commit")
                # Closing and subscribing again restarts from the committed
                # offsets, so the failed batch is processed again.
                consumer.close()
                consumer = None
                self.stopping.wait(RETRY_SECONDS)
        if consumer is not None:
            consumer.close()

    def _relay_if_due(self) -> None:
        if time.monotonic() < self._next_relay:
            return
        self._next_relay = time.monotonic() + RELAY_EVERY_SECONDS
        try:
            event_relay.relay(self.services)
        except (BackendUnavailable, DBAPIError) as exc:
            log.warning("outbox relay skipped: %s", exc)

    def _poll(self, consumer: BusConsumer) -> list[BusRecord]:
        records = consumer.poll_batch(BATCH, POLL_SECONDS)
        if time.monotonic() >= self._next_lag_check:
            metrics.CONSUMER_LAG.set(consumer.lag())
            self._next_lag_check = time.monotonic() + LAG_CHECK_SECONDS
        return records

    def _deliver(self, consumer: BusConsumer, records: list[BusRecord]) -> None:
        started = time.monotonic()
        with metrics.BATCH_SECONDS.time():
            try:
                process_records(self.services, records)
            except Exception as exc:
                if transient(exc):
                    raise
                log.exception("a batch failed on its data; delivering its records one by one")
                self._deliver_one_by_one(records)
            consumer.commit()
        log.debug(
            "delivered %d records in %.1f ms", len(records), (time.monotonic() - started) * 1e3
        )
