"""Fixtures of the account and group API tests.

``app`` is the embedded default in a temporary data dir; ``real_app`` runs on
MariaDB + Redis (the bus stays embedded). ``api`` is parametrized over both:
a test that takes it runs twice, marked ``unit`` then ``integration``; a test
that takes ``app`` alone carries the ``unit`` mark itself. Each ``ApiClient`` has its own client
address, so rate-limit counters never leak from one test into another, even
through the shared Redis.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from flask import Flask

from imchat.config import load_settings
from imchat.factory import create_app, services_of
from imchat.ops import migrate
from imchat.services import auth as auth_service

from .support import SECRET, ApiClient


@pytest.fixture(autouse=True)
def cheap_password_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Real argon2id, with the smallest cost: 1 ms a hash instead of 150 ms.

    test_auth checks that the production parameters are the ones used otherwise.
    """
    cheap = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    monkeypatch.setattr(auth_service, "password_hasher", lambda settings: cheap)


def _close(app: Flask) -> None:
    services_of(app).close()


@pytest.fixture
def app(data_dir: Path) -> Iterator[Flask]:
    """The embedded default, migrated."""
    flask_app = create_app(overrides={"data_dir": str(data_dir)}, environ={})
    migrate.upgrade(services_of(flask_app).settings)
    yield flask_app
    _close(flask_app)


@pytest.fixture(scope="session")
def migrated_mysql(mysql_url: str) -> str:
    migrate.upgrade(load_settings(environ={}, overrides={"database_url": mysql_url}))
    return mysql_url


@pytest.fixture
def real_app(migrated_mysql: str, redis_url: str, data_dir: Path) -> Iterator[Flask]:
    """MariaDB (shared by the session: tests use fresh usernames) and Redis."""
    overrides = {
        "data_dir": str(data_dir),
        "database_url": migrated_mysql,
        "redis_url": redis_url,
        "secret_key": SECRET,
    }
    flask_app = create_app(overrides=overrides, environ={})
    yield flask_app
    _close(flask_app)


@pytest.fixture(
    params=[
        pytest.param("embedded", marks=pytest.mark.unit),
        pytest.param("real", marks=pytest.mark.integration),
    ]
)
def api(request: pytest.FixtureRequest) -> ApiClient:
    """The same test on the embedded default (a unit test) and on MariaDB +
    Redis (an integration test)."""
    name = "app" if request.param == "embedded" else "real_app"
    return ApiClient(request.getfixturevalue(name))
