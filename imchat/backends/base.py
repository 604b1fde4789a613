"""The small interfaces imchat keeps to the outside world.

Each one has an embedded twin (in-process, durable where it must be, in
SQLite) and a real adapter (Kafka, etcd, Redis). The same contract tests in
``tests/backends/`` run against both.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from imchat.wire.batch import RESYNC
from imchat.wire.topics import TopicSpec


class BackendUnavailable(Exception):
    """A backend did not answer in time. Nothing was accepted; callers may retry."""

    def __init__(self, backend: str, detail: str = "") -> None:
        super().__init__(f"{backend} unavailable" + (f": {detail}" if detail else ""))
        self.backend = backend


# --------------------------------------------------------------------- bus
@dataclass(frozen=True)
class BusRecord:
    topic: str
    partition: int
    offset: int
    key: str
    value: bytes


class BusConsumer(abc.ABC):
    """A member of a consumer group. Offsets advance only on ``commit``."""

    @abc.abstractmethod
    def poll_batch(self, max_records: int, timeout: float) -> list[BusRecord]:
        """Up to ``max_records`` records, waiting at most ``timeout`` seconds for the first."""

    @abc.abstractmethod
    def commit(self) -> None:
        """Mark every record returned so far as processed (at-least-once)."""

    @abc.abstractmethod
    def lag(self) -> int:
        """Records on the subscribed topics not yet returned (an estimate)."""

    @abc.abstractmethod
    def close(self) -> None: ...


class MessageBus(abc.ABC):
    """The durable message bus (Kafka). Records with one key keep their order."""

    name = "kafka"

    @abc.abstractmethod
    def publish(self, topic: str, key: str, value: bytes) -> None:
        """Return once the record is durable (acks=all); raise BackendUnavailable."""

    def publish_many(self, records: Sequence[tuple[str, str, bytes]]) -> None:
        """Publish (topic, key, value) records; return once all are durable."""
        for topic, key, value in records:
            self.publish(topic, key, value)

    @abc.abstractmethod
    def subscribe(self, topics: Sequence[str], group_id: str) -> BusConsumer: ...

    @abc.abstractmethod
    def ensure_topics(
        self, specs: Iterable[TopicSpec], replication_factor: int, min_insync_replicas: int
    ) -> list[str]:
        """Create the missing topics; return the names created (idempotent)."""

    @abc.abstractmethod
    def topic_partitions(self) -> dict[str, int]:
        """Partition count of every topic on the bus."""

    @abc.abstractmethod
    def ping(self, timeout: float = 2.0) -> None:
        """Raise BackendUnavailable unless the bus answers within ``timeout``."""

    def close(self) -> None:  # noqa: B027 - optional hook
        pass


# ------------------------------------------------------------------ router
class Router(abc.ABC):
    """Which gateways hold a user's connections (etcd).

    A gateway registers itself under a lease; its user routes are attached to
    that lease, so they vanish when the gateway dies and stops renewing it.
    ``gateways_for`` reads a watched local copy: no round trip per message.
    """

    name = "etcd"

    @abc.abstractmethod
    def register_gateway(self, gateway_id: str) -> None: ...

    @abc.abstractmethod
    def unregister_gateway(self, gateway_id: str) -> None:
        """Revoke the gateway's lease: its routes disappear at once."""

    @abc.abstractmethod
    def add_route(self, user_id: str, gateway_id: str) -> None: ...

    @abc.abstractmethod
    def remove_route(self, user_id: str, gateway_id: str) -> None: ...

    @abc.abstractmethod
    def gateways_for(self, user_id: str) -> set[str]: ...

    @abc.abstractmethod
    def on_unrouted(self, listener: Callable[[list[str]], None]) -> None:
        """Call ``listener(user_ids)`` whenever users are left without any route,
        whoever removed the last one (this process, another, or an ended lease).

        It is called on the thread that saw the change (a watch, or a caller of
        ``remove_route``), outside any lock: it must only hand the work over.
        """

    @abc.abstractmethod
    def prune_stale(self, limit: int) -> int:
        """Delete up to ``limit`` routes no live gateway registration stands behind.

        The number deleted. Such routes come from bugs or lost leases; a second
        run, or two at once, find nothing more to delete.
        """

    @abc.abstractmethod
    def ping(self, timeout: float = 2.0) -> None: ...

    def close(self) -> None:  # noqa: B027 - optional hook
        pass


# --------------------------------------------------------- sequence store
@dataclass(frozen=True)
class SeqRequest:
    """Assign the next seq of ``conversation_id`` to a message, once per ``dedup_key``."""

    conversation_id: str
    dedup_key: str
    msg_id: str
    ts: int


@dataclass(frozen=True)
class SeqAssignment:
    """The seq of a message; ``duplicate`` when the dedup key had one already.

    A duplicate carries the first message's msg_id, seq and ts (and ceiling 0).
    """

    seq: int
    ceiling: int
    msg_id: str
    ts: int
    duplicate: bool

    def encode(self) -> str:
        return f"{self.msg_id}|{self.seq}|{self.ts}"

    @classmethod
    def decode(cls, value: str) -> SeqAssignment:
        msg_id, seq, ts = value.split("|")
        return cls(int(seq), 0, msg_id, int(ts), duplicate=True)


class SequenceStore(abc.ABC):
    """Sequence numbers and the dedup keys that hand each message one (Redis).

    The store may lose keys (restart, allkeys-lru eviction): ``assign_seqs``
    then returns None and the caller restores the counter above its durable
    reservation (see ``imchat.services.sequences``).
    """

    name = "redis"

    @abc.abstractmethod
    def assign_seqs(
        self, requests: Sequence[SeqRequest], dedup_ttl_seconds: int
    ) -> list[SeqAssignment | None]:
        """Atomically per request: the earlier assignment of its dedup key, or
        the conversation's next seq recorded under that key; None when the
        conversation's counter is unknown (nothing is recorded then)."""

    @abc.abstractmethod
    def init_seq(self, conversation_id: str, seq: int, ceiling: int) -> None:
        """Create the counter at ``seq`` unless it exists already."""

    @abc.abstractmethod
    def raise_ceiling(self, conversation_id: str, ceiling: int) -> None:
        """Record a new durable reservation (never lowers it)."""

    @abc.abstractmethod
    def ping(self, timeout: float = 2.0) -> None: ...

    def close(self) -> None:  # noqa: B027 - optional hook
        pass


# ------------------------------------------------------------------- cache
class Cache(abc.ABC):
    """Small values kept for a while to spare the database a read (Redis).

    An entry may vanish before its TTL (restart, eviction): a miss is always
    a correct answer. Callers that can read the database instead treat
    ``BackendUnavailable`` as a miss.
    """

    name = "redis"

    @abc.abstractmethod
    def get(self, key: str) -> str | None: ...

    @abc.abstractmethod
    def set(self, key: str, value: str, ttl_seconds: int) -> None: ...

    @abc.abstractmethod
    def delete(self, key: str) -> None:
        """Drop the entry (no error when there is none)."""

    @abc.abstractmethod
    def get_many(self, keys: Sequence[str]) -> list[str | None]:
        """The value of each key, in order (one round trip)."""

    @abc.abstractmethod
    def exchange(self, key: str, value: str, ttl_seconds: int) -> str | None:
        """Set the entry and return the value it had (None: none), atomically."""

    @abc.abstractmethod
    def replace(self, key: str, expected: str | None, value: str, ttl_seconds: int) -> bool:
        """Set the entry only if it holds ``expected`` (None: only if it is absent),
        atomically; whether it was set. Several processes racing on one state
        change: exactly one wins."""

    @abc.abstractmethod
    def ping(self, timeout: float = 2.0) -> None: ...

    def close(self) -> None:  # noqa: B027 - optional hook
        pass


# --------------------------------------------------------- gateway channel
class GatewayChannel(abc.ABC):
    """Carries deliveries from the bus consumer to one gateway process.

    Fire-and-forget by design: what must not be lost is already durable
    (the bus record and the pending rows); a delivery lost here reaches the
    user as a pending message on the next connect.
    """

    name = "redis pub/sub"
    # Handed to the listener after the channel was lost and is back: what was
    # sent meanwhile is gone, the gateway must catch up (Gateway.resync).
    RESYNC = RESYNC

    @abc.abstractmethod
    def send_many(self, deliveries: Sequence[tuple[str, bytes]]) -> None:
        """Send (gateway_id, payload) pairs, in order, in as few round trips as possible."""

    @abc.abstractmethod
    def listen(self, gateway_id: str, on_payload: Callable[[bytes], None]) -> None:
        """Call ``on_payload`` for every payload sent to ``gateway_id`` (in the background)."""

    @abc.abstractmethod
    def stop_listening(self, gateway_id: str) -> None:
        """No payload sent after this returns reaches the listener."""

    def close(self) -> None:  # noqa: B027 - optional hook
        pass
