"""Topic administration for the Kafka bus: creating the topics, listing them,
and the metadata request that serves as the bus's ping."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from imchat.backends.base import BackendUnavailable
from imchat.backends.kafka.client import BACKEND, describe, run_blocking
from imchat.wire.topics import TopicSpec


class TopicAdmin:
    """The bus's admin client, built lazily and again after a fork; topic names
    on the broker are the bus's names behind ``prefix``."""

    def __init__(self, config: dict[str, Any], prefix: str, timeout: float) -> None:
        self.config = config
        self.prefix = prefix
        self.timeout = timeout
        self._lock = threading.Lock()
        self._admin: AdminClient | None = None
        self._admin_pid = 0

    def _client(self) -> AdminClient:
        with self._lock:
            if self._admin is None or self._admin_pid != os.getpid():
                self._admin = AdminClient(self.config)
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
        return run_blocking(self._create_topics, self._client(), new_topics)

    def _create_topics(self, admin: AdminClient, new_topics: list[NewTopic]) -> list[str]:
        # ``admin`` stays referenced while its futures resolve: a client
        # collected too early may leave them unresolved.
        futures = admin.create_topics(
            new_topics, operation_timeout=self.timeout, request_timeout=self.timeout
        )
        created: list[str] = []
        for name, future in futures.items():
            try:
                future.result(timeout=self.timeout + 1)
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
        return partitions_by_topic(self.metadata(self.timeout), self.prefix)

    def metadata(self, timeout: float) -> Any:
        """The broker's answer to ``list_topics``; BackendUnavailable when none comes in time."""
        try:
            return run_blocking(self._client().list_topics, None, timeout)
        except KafkaException as exc:
            raise BackendUnavailable(BACKEND, describe(exc.args[0])) from exc

    def close(self) -> None:
        """Drop the client (the next call builds a new one)."""
        with self._lock:
            self._admin = None


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
