"""The consumer side of the Kafka bus: one member of a consumer group, its
polls, its manual commits and its lag."""

from __future__ import annotations

import logging
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from imchat.backends.base import BackendUnavailable, BusConsumer, BusRecord
from imchat.backends.kafka.client import BACKEND, TRANSPORT_ERRORS, describe, run_blocking

log = logging.getLogger("imchat.bus.kafka")


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


def text_key(raw: str | bytes | None) -> str:
    """A record key as the bus's str (keys are user and conversation ids)."""
    if isinstance(raw, bytes):
        return raw.decode("utf-8", "replace")
    return raw or ""
