"""The MySQL engine: new connections do not each rebuild a TLS context."""

from __future__ import annotations

import ssl

import pytest
from sqlalchemy import text

from imchat.config import Settings
from imchat.stores.db import make_engine

pytestmark = pytest.mark.integration


def test_new_connections_share_one_tls_context(
    settings: Settings, mysql_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    loads = []
    original = ssl.SSLContext.load_default_certs

    def counting(self: ssl.SSLContext, *args: object) -> None:
        loads.append(1)
        original(self, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(ssl.SSLContext, "load_default_certs", counting)
    engine = make_engine(settings.replace(database_url=mysql_url))
    connections = [engine.connect() for _ in range(8)]  # 8 distinct DB connections
    for connection in connections:
        assert connection.execute(text("SELECT 1")).scalar() == 1
        connection.close()
    engine.dispose()
    assert len(loads) <= 1
