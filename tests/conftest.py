"""Shared fixtures.

Real-service fixtures never skip: when a service the test needs is down the
test fails and names it (``make test`` starts them: scripts/test-services).
The live-server fixtures (``embedded_server``, ``own_server``, ``users``,
``sockets``) and the helpers behind them are in tests/support/.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from imchat.config import Settings, load_settings

pytest_plugins = ["tests.support.fixtures"]

REAL = {
    "mysql": os.environ.get("IMCHAT_TEST_MYSQL_URL", "mysql+pymysql://root@127.0.0.1:3306/"),
    "redis": os.environ.get("IMCHAT_TEST_REDIS_URL", "redis://127.0.0.1:6379/15"),
    "kafka": os.environ.get("IMCHAT_TEST_KAFKA", "127.0.0.1:9092"),
    "etcd": os.environ.get("IMCHAT_TEST_ETCD", "http://127.0.0.1:2379"),
}


def _host_port(name: str) -> tuple[str, int]:
    raw = REAL[name]
    if name == "kafka":
        host, _, port = raw.split(",")[0].rpartition(":")
        return host, int(port)
    parsed = urlparse(raw.split(",")[0])
    default = {"mysql": 3306, "redis": 6379, "etcd": 2379}[name]
    return parsed.hostname or "127.0.0.1", parsed.port or default


def require_service(name: str) -> str:
    """The service's address; fail the test (never skip) when it does not answer."""
    host, port = _host_port(name)
    try:
        socket.create_connection((host, port), timeout=2).close()
    except OSError as exc:
        pytest.fail(
            f"{name} is required at {host}:{port} but does not answer ({exc}); "
            "start the test services with `scripts/test-services up` or run `make test`",
            pytrace=False,
        )
    return REAL[name]


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "var"


@pytest.fixture
def settings(data_dir: Path) -> Settings:
    """Embedded-default settings isolated in a temporary data dir."""
    return load_settings(environ={}, overrides={"data_dir": str(data_dir)})


@pytest.fixture(scope="session")
def mysql_url() -> Iterator[str]:
    """A throwaway MariaDB database for the whole run, dropped at the end."""
    admin = make_url(require_service("mysql"))
    name = f"imchat_test_{uuid.uuid4().hex[:10]}"
    engine = create_engine(admin.set(database=None))
    with engine.connect() as conn:
        conn.execute(text(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4"))
    try:
        yield admin.set(database=name, query={"charset": "utf8mb4"}).render_as_string(
            hide_password=False
        )
    finally:
        with engine.connect() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS `{name}`"))
        engine.dispose()


@pytest.fixture(scope="session")
def redis_url() -> str:
    return require_service("redis")


@pytest.fixture(scope="session")
def kafka_bootstrap() -> str:
    return require_service("kafka")


@pytest.fixture(scope="session")
def etcd_endpoints() -> str:
    return require_service("etcd")


@pytest.fixture
def unique() -> str:
    """A short unique token to keep tests from sharing keys on real services."""
    return uuid.uuid4().hex[:12]


# What a test needs a real service for: a ``unit`` test may ask for none of them.
SERVICE_FIXTURES = {
    "mysql_url": "mysql",
    "redis_url": "redis",
    "kafka_bootstrap": "kafka",
    "etcd_endpoints": "etcd",
}


def pytest_runtest_setup(item: pytest.Item) -> None:
    """``make test-unit`` (``-m unit``) runs without services: a test marked
    ``unit`` that asks for a real service's fixture fails and says which."""
    if item.get_closest_marker("unit") is None:
        return
    needed = sorted(
        SERVICE_FIXTURES[name]
        for name in getattr(item, "fixturenames", ())
        if name in SERVICE_FIXTURES
    )
    if needed:
        pytest.fail(
            f"marked unit but needs {', '.join(needed)}: mark it integration", pytrace=False
        )
