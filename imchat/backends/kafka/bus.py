"""``KafkaBus``: the MessageBus on Kafka, from the producer, the consumers and
the admin client of this package."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from imchat.backends.base import BusConsumer, MessageBus
from imchat.backends.kafka.admin import TopicAdmin
from imchat.backends.kafka.client import common_config, consumer_config, producer_config
from imchat.backends.kafka.consumer import KafkaConsumer
from imchat.backends.kafka.producer import Publisher
from imchat.config import Settings
from imchat.wire.topics import TopicSpec


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
        # Topic names on the broker are the bus's names behind this prefix.
        self.prefix = settings.kafka_topic_prefix
        self._publisher = Publisher(
            producer_config(settings, delivery_timeout), self.prefix, delivery_timeout
        )
        self._admin = TopicAdmin(common_config(settings), self.prefix, admin_timeout)

    def publish(self, topic: str, key: str, value: bytes) -> None:
        """Return once the record is durable (acks=all); raise BackendUnavailable."""
        self.publish_many([(topic, key, value)])

    def publish_many(self, records: Sequence[tuple[str, str, bytes]]) -> None:
        """Produce every record, then wait once for all their delivery reports."""
        self._publisher.publish_many(records)

    def subscribe(self, topics: Sequence[str], group_id: str) -> BusConsumer:
        """A new member of ``group_id``: reads from the committed offsets, else the start."""
        config = consumer_config(self.settings, group_id, self.session_timeout_ms)
        return KafkaConsumer(config, list(topics), self.prefix)

    def ensure_topics(
        self, specs: Iterable[TopicSpec], replication_factor: int, min_insync_replicas: int
    ) -> list[str]:
        """Create the missing topics with their partitions and config; return those created."""
        return self._admin.ensure_topics(specs, replication_factor, min_insync_replicas)

    def topic_partitions(self) -> dict[str, int]:
        """Partition count of every topic under the prefix (named without it),
        internal ones (``__consumer_offsets``) left out."""
        return self._admin.topic_partitions()

    def ping(self, timeout: float = 2.0) -> None:
        """Raise BackendUnavailable unless the broker answers a metadata request in time."""
        self._admin.metadata(timeout)

    def close(self, flush_timeout: float = 5.0) -> None:
        """Flush what is in flight (bounded), stop the poll thread, drop the clients."""
        self._admin.close()
        self._publisher.close(flush_timeout)
