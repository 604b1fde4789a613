"""Settings: defaults, then ``IMCHAT_*`` environment variables, then overrides.

With no variable set, imchat is the *embedded default*: one SQLite file under
``./var/`` and in-process twins of the bus, the router, the sequence store and
Celery. Each ``*_url`` / endpoint setting switches that one part to its real
adapter. The remaining defaults are the production values of the seed
infrastructure (pool 25 open / 5 idle, dedup 7 days, etcd lease 90 s / 30 s).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

ENV_PREFIX = "IMCHAT_"
DAY = 24 * 3600


@dataclass(frozen=True)
class Settings:
    """Every knob of imchat. Field ``x`` is read from ``IMCHAT_X``."""

    data_dir: str = "var"
    # Backends: empty means "use the embedded twin".
    database_url: str = ""
    redis_url: str = ""
    kafka_bootstrap_servers: str = ""
    etcd_endpoints: str = ""
    celery_broker_url: str = ""
    celery_result_backend: str = ""

    secret_key: str = ""
    # Access tokens are short-lived: a session ends within this of a revocation
    # for anything that cached a token; refresh tokens keep the session going.
    token_ttl_seconds: int = 15 * 60
    refresh_ttl_seconds: int = 30 * DAY  # a session unused this long ends
    ws_ticket_ttl_seconds: int = 30
    session_sweep_seconds: int = 30  # each gateway re-checks its sockets' sessions
    # argon2id cost (the library's recommended defaults).
    password_hash_time_cost: int = 3
    password_hash_memory_kib: int = 65536
    password_hash_parallelism: int = 4
    # Rate limits on the account endpoints; 0 turns one off.
    login_limit_per_address: int = 10
    login_limit_per_username: int = 5
    login_window_seconds: int = 60
    register_limit_per_address: int = 20
    register_limit_per_username: int = 5
    register_window_seconds: int = 3600
    # /metrics: when a token is set, scrapes need `Authorization: Bearer <token>`.
    # With real backends configured the web process refuses to start without
    # one, unless metrics_public=1 says /metrics is reachable only from inside.
    metrics_token: str = ""
    metrics_public: int = 0
    log_format: str = ""  # "json" or "text"; empty: json in production, text embedded
    log_level: str = "INFO"

    # MySQL pool of the seed: 25 max open, 5 kept idle.
    db_pool_size: int = 5
    db_max_overflow: int = 20
    db_pool_recycle_seconds: int = 1800

    # Redis
    dedup_ttl_seconds: int = 7 * DAY
    group_cache_ttl_seconds: int = 3600

    # How long after sending a message its sender may still edit or delete it.
    edit_window_seconds: int = DAY

    # etcd: user routes live under a lease of 90 s, renewed every 30 s.
    etcd_lease_ttl_seconds: int = 90
    etcd_lease_renew_seconds: int = 30
    etcd_prefix: str = "/imchat"

    # Kafka: replication 3 / min ISR 2 in production, 1 / 1 for a one-node test broker.
    kafka_replication_factor: int = 3
    kafka_min_insync_replicas: int = 2
    kafka_client_id: str = "imchat"
    kafka_consumer_group: str = "imchat-delivery"
    # Put before every topic name on the broker, so that deployments sharing
    # a cluster (staging beside production, test runs, benchmarks) never read
    # each other's records. Code and docs use the names without it.
    kafka_topic_prefix: str = ""
    # Producer batching window (librdkafka's own default): fewer, fuller
    # produce requests for a few ms of latency.
    kafka_linger_ms: int = 5
    # How long the broker may hold a fetch when it has no data. Kafka answers
    # as soon as data arrives; a broker that holds fetches the whole wait
    # (the tansu test broker) turns it into latency, so keep it short.
    kafka_fetch_wait_ms: int = 10
    # librdkafka debug contexts (e.g. "cgrp,fetch,protocol"), logged to stderr.
    kafka_debug: str = ""

    # Sequence numbers are reserved durably in blocks of this size.
    seq_snapshot_interval: int = 10_000
    # Messages (and with them what is pending) are kept this long; 0: for ever.
    history_retention_days: int = 365

    # Presence: a user turns offline this long after their last connection
    # closed, so that a page reload sends neither offline nor online.
    presence_grace_seconds: int = 10

    # Pages that may open the WebSocket besides the server's own origin
    # (comma-separated origins, or "*" for any); see imchat/gateway/origin.py.
    allowed_origins: str = ""
    # Web Push (RFC 8030, RFC 8291 payloads, VAPID). The keys: the private
    # key as 32 bytes base64url, the public one as the uncompressed P-256
    # point base64url (derived from the private key when empty). Generated
    # once into data_dir in the embedded default; required otherwise.
    vapid_private_key: str = ""
    vapid_public_key: str = ""
    vapid_subject: str = "mailto:push@imchat.invalid"
    # One push service request's timeout, and how long a push service keeps
    # a notification for a browser that is offline (the TTL header).
    push_timeout_seconds: int = 10
    push_ttl_seconds: int = DAY
    # Groups larger than this push nothing unless a member turned push on.
    push_group_mute_above: int = 100
    # Comma-separated URL schemes a subscription's endpoint may have.
    push_endpoint_schemes: str = "https"

    gateway_id: str = ""
    max_frame_bytes: int = 64 * 1024
    # Per connection: frames per second (token bucket) and the burst allowed.
    frame_rate_per_second: int = 100
    frame_burst: int = 500
    # Open connections of one user on one gateway process.
    max_connections_per_user: int = 10

    @property
    def data_path(self) -> Path:
        return Path(self.data_dir)

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_path / 'imchat.sqlite3').resolve()}"

    @property
    def embedded(self) -> bool:
        """True when no external backend at all is configured."""
        return not any(self.backends().values())

    def backends(self) -> dict[str, str]:
        """The configured endpoint of each external system ('' = embedded twin)."""
        return {
            "database": self.database_url,
            "redis": self.redis_url,
            "kafka": self.kafka_bootstrap_servers,
            "etcd": self.etcd_endpoints,
            "celery": self.celery_broker_url,
        }

    @property
    def etcd_endpoint_list(self) -> list[str]:
        return [e.strip() for e in self.etcd_endpoints.split(",") if e.strip()]

    @property
    def push_endpoint_scheme_set(self) -> frozenset[str]:
        return frozenset(
            s.strip().lower() for s in self.push_endpoint_schemes.split(",") if s.strip()
        )

    @property
    def effective_log_format(self) -> str:
        if self.log_format:
            return self.log_format
        return "text" if self.embedded else "json"

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)


def _coerce(kind: Any, raw: str, name: str) -> Any:
    if kind in (int, "int"):
        try:
            return int(raw)
        except ValueError:
            raise ValueError(
                f"{ENV_PREFIX}{name.upper()} must be an integer, got {raw!r}"
            ) from None
    return raw


def load_settings(
    environ: Mapping[str, str] | None = None, overrides: Mapping[str, Any] | None = None
) -> Settings:
    """Build settings from defaults, the environment and explicit overrides."""
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for f in fields(Settings):
        raw = environ.get(ENV_PREFIX + f.name.upper())
        if raw is not None:
            values[f.name] = _coerce(f.type, raw, f.name)
    if overrides:
        unknown = set(overrides) - {f.name for f in fields(Settings)}
        if unknown:
            raise ValueError(f"unknown settings: {sorted(unknown)}")
        values.update(overrides)
    return Settings(**values)
