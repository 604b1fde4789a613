"""Fixtures of the backend contract tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from .redis_server import PrivateRedis


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    """A redis-server of the test's own (see ``PrivateRedis``), stopped at the end."""
    server = PrivateRedis(tmp_path)
    server.start()
    yield server
    server.stop()
