"""Kafka topics as code: the one list that the bus, the topic-init command,
the compose files and the infra check all read."""

from __future__ import annotations

from dataclasses import dataclass

HOUR_MS = 3600 * 1000
DAY_MS = 24 * HOUR_MS


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    retention_ms: int
    purpose: str

    def config(self, min_insync_replicas: int) -> dict[str, str]:
        return {
            "retention.ms": str(self.retention_ms),
            "min.insync.replicas": str(min_insync_replicas),
        }


# The seed's three topics, plus the one the design needs for direct messages.
GROUP_MSG = TopicSpec("group_msg", 32, HOUR_MS, "group messages on their way to fan-out")
OFFLINE_MSG = TopicSpec("offline_msg", 64, 7 * DAY_MS, "pending-message queue (7-day retention)")
MEMBERSHIP_CHANGE = TopicSpec("membership_change", 16, HOUR_MS, "group membership events")
DIRECT_MSG = TopicSpec("direct_msg", 32, HOUR_MS, "direct messages on their way to delivery")

TOPICS: tuple[TopicSpec, ...] = (GROUP_MSG, OFFLINE_MSG, MEMBERSHIP_CHANGE, DIRECT_MSG)
TOPICS_BY_NAME = {t.name: t for t in TOPICS}

# Producer settings of the seed: wait for every in-sync replica, compress,
# and let the broker drop retried duplicates. linger.ms comes from settings
# (``kafka_linger_ms``).
PRODUCER_CONFIG: dict[str, str | int | bool] = {
    "acks": "all",
    "enable.idempotence": True,
    "compression.type": "snappy",
}
