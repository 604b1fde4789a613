"""One place wires the services: each is built once, lazily, from settings.

An empty endpoint setting selects the embedded twin, a set one the real
adapter; this is the only module that makes that choice. Tests may swap an
entry before first use.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from flask import Flask
from sqlalchemy import text

from imchat.backends.base import (
    BackendUnavailable,
    Cache,
    GatewayChannel,
    MessageBus,
    Router,
    SequenceStore,
)
from imchat.config import Settings
from imchat.stores.db import Database, make_engine

if TYPE_CHECKING:
    from celery import Celery

    from imchat.backends.ratelimit import RateLimiter
    from imchat.gateway.hub import Gateway
    from imchat.services.delivery.consumer import DeliveryConsumer
    from imchat.services.jobs import JobRunner
    from imchat.services.push.dispatcher import PushDispatcher
    from imchat.services.push.keys import VapidKeys


class Services:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @cached_property
    def db(self) -> Database:
        return Database(make_engine(self.settings))

    @cached_property
    def bus(self) -> MessageBus:
        if self.settings.kafka_bootstrap_servers:
            from imchat.backends.kafka import KafkaBus

            return KafkaBus(self.settings)
        from imchat.backends.bus_embedded import EmbeddedBus

        return EmbeddedBus(self._data_file("embedded-bus.sqlite3"))

    @cached_property
    def router(self) -> Router:
        if self.settings.etcd_endpoints:
            from imchat.backends.etcd import EtcdRouter

            return EtcdRouter(self.settings)
        from imchat.backends.router_embedded import EmbeddedRouter

        return EmbeddedRouter()

    @cached_property
    def seqs(self) -> SequenceStore:
        if self.settings.redis_url:
            from imchat.backends.seq_redis import RedisSequenceStore

            return RedisSequenceStore(self.settings)
        from imchat.backends.seq_embedded import EmbeddedSequenceStore

        return EmbeddedSequenceStore(self._data_file("embedded-seq.sqlite3"))

    @cached_property
    def cache(self) -> Cache:
        """Small values with a TTL (group member lists, known users): Redis, or in memory."""
        if self.settings.redis_url:
            from imchat.backends.cache_redis import RedisCache

            return RedisCache(self.settings)
        from imchat.backends.cache_embedded import EmbeddedCache

        return EmbeddedCache()

    @cached_property
    def channel(self) -> GatewayChannel:
        """Consumer-to-gateway deliveries: Redis pub/sub, or a direct call embedded."""
        if self.settings.redis_url:
            from imchat.backends.channel_redis import RedisChannel

            return RedisChannel(self.settings)
        from imchat.backends.channel_embedded import EmbeddedChannel

        return EmbeddedChannel()

    @cached_property
    def celery(self) -> Celery:
        from imchat.celery_app import make_celery

        return make_celery(self.settings)

    @cached_property
    def jobs(self) -> JobRunner:
        """Background jobs: Celery tasks when a broker is configured, else run inline."""
        from imchat.services.jobs import CeleryJobs, InlineJobs

        if self.settings.celery_broker_url:
            return CeleryJobs(self.celery)
        return InlineJobs(self)

    @cached_property
    def rate_limiter(self) -> RateLimiter:
        """Register and login attempts: counted in Redis (shared by every worker) or in memory."""
        from imchat.backends.ratelimit import MemoryRateLimiter, RedisRateLimiter

        if self.settings.redis_url:
            return RedisRateLimiter(self.settings.redis_url)
        return MemoryRateLimiter()

    @cached_property
    def gateway(self) -> Gateway:
        """This process's WebSocket gateway (built after a gunicorn fork, on first use)."""
        from imchat.gateway.hub import Gateway

        return Gateway(self)

    @cached_property
    def local_consumer(self) -> DeliveryConsumer | None:
        """The bus consumer this process runs itself: only with the embedded bus,
        which no other process can read. Production runs ``python -m imchat consume``."""
        if self.settings.kafka_bootstrap_servers:
            return None
        from imchat.services.delivery.consumer import DeliveryConsumer
        from imchat.wire.topics import TOPICS

        self.bus.ensure_topics(TOPICS, 1, 1)
        return DeliveryConsumer(self)

    @cached_property
    def push_dispatcher(self) -> PushDispatcher:
        """Where delivery leaves the recipients it found no route for (Web Push)."""
        from imchat.services.push.dispatcher import PushDispatcher

        return PushDispatcher(self)

    @cached_property
    def vapid(self) -> VapidKeys:
        """The VAPID key pair: configured, or generated once under data_dir embedded."""
        from imchat.services.push.keys import vapid_keys

        return vapid_keys(self.settings, self._data_file)

    @cached_property
    def secret_key(self) -> str:
        """The token-signing secret: configured, or generated once and kept under data_dir."""
        if self.settings.secret_key:
            return self.settings.secret_key
        if not self.settings.embedded:
            raise RuntimeError("IMCHAT_SECRET_KEY must be set when real backends are configured")
        path = self._data_file("secret_key")
        if not path.exists():
            path.write_text(secrets.token_urlsafe(48))
            path.chmod(0o600)
        return path.read_text().strip()

    def _data_file(self, name: str) -> Path:
        path = self.settings.data_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    # ------------------------------------------------------------ readiness
    def readiness_checks(self) -> dict[str, Callable[[], None]]:
        """Every backend's check: configured real ones and the embedded twins alike."""
        return {
            "database": self._ping_database,
            "redis": lambda: self.seqs.ping(timeout=1.0),
            "kafka": lambda: self.bus.ping(timeout=1.0),
            "etcd": lambda: self.router.ping(timeout=1.0),
            "celery": self._ping_celery,
        }

    def check_readiness(self, timeout: float = 2.0) -> dict[str, str | None]:
        """Run every check at once; map backend -> None when it answered, else why not."""
        checks = self.readiness_checks()
        results: dict[str, str | None] = {}
        with ThreadPoolExecutor(max_workers=len(checks)) as pool:
            futures = {name: pool.submit(check) for name, check in checks.items()}
            for name, future in futures.items():
                try:
                    future.result(timeout=timeout)
                    results[name] = None
                except TimeoutError:
                    results[name] = f"no answer within {timeout:g}s"
                except BackendUnavailable as exc:
                    results[name] = str(exc)
                except Exception as exc:
                    results[name] = f"{type(exc).__name__}: {exc}"
        return results

    def _ping_database(self) -> None:
        with self.db.engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    def _ping_celery(self) -> None:
        if not self.settings.celery_broker_url:
            return
        with self.celery.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=1)

    # ------------------------------------------------------------ serving
    def prepare(self) -> None:
        """Bring this process's backends to a servable state.

        The embedded default migrates its own SQLite file so that a fresh
        clone serves at once (in production migrations are a deploy step,
        ``python -m imchat db upgrade``, never done by a web worker), and
        consumes its own bus.
        """
        if not self.settings.database_url:
            from imchat.ops import migrate

            migrate.upgrade(self.settings)
        if self.local_consumer is not None:
            self.local_consumer.start()

    def stop_serving(self) -> None:
        """Leave the cluster cleanly: revoke the gateway's lease (its routes go
        at once instead of after 90 s), flush confirmations, stop the consumer
        and hand over the Web Push notifications it left queued."""
        if "gateway" in self.__dict__:  # built only once a socket came
            self.gateway.stop()
        consumer = self.__dict__.get("local_consumer")
        if consumer is not None:
            consumer.stop()
        if "push_dispatcher" in self.__dict__:  # after the consumer: it feeds the dispatcher
            self.push_dispatcher.stop()

    def close(self) -> None:
        if "push_dispatcher" in self.__dict__:
            self.push_dispatcher.stop()
        for name in ("channel", "bus", "router", "seqs", "cache", "rate_limiter"):
            if name in self.__dict__:
                getattr(self, name).close()
        if "db" in self.__dict__:
            self.db.dispose()


def services_of(app: Flask) -> Services:
    """The Services of an app made by ``imchat.factory.create_app``."""
    services: Services = app.extensions["imchat"]
    return services


def settings_of(app: Flask) -> Settings:
    return services_of(app).settings
