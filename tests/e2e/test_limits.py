"""Per-connection frame rate limits and the cap on connections per user."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import websocket

from tests.support.clients import register_users
from tests.support.server import EmbeddedServer, run_server
from tests.support.sockets import RawSocket

pytestmark = pytest.mark.e2e

LIMITS = {
    "IMCHAT_FRAME_RATE_PER_SECOND": "5",
    "IMCHAT_FRAME_BURST": "10",
    "IMCHAT_MAX_CONNECTIONS_PER_USER": "2",
}


@pytest.fixture(scope="module")
def limited_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedServer]:
    yield from run_server(tmp_path_factory.mktemp("limited"), LIMITS)


def test_a_flood_gets_rate_limited_errors_and_the_connection_lives(
    limited_server: EmbeddedServer,
) -> None:
    (alice,) = register_users(limited_server.base_url, 1)
    sock = RawSocket(limited_server.base_url, alice.token)
    try:
        assert sock.recv()["type"] == "synced"
        for i in range(30):
            sock.send({"type": "send", "id": f"f{i}", "to": "nobody", "body": "x"})
        answers = [sock.recv() for _ in range(30)]
        limited = [a for a in answers if a.get("code") == "rate_limited"]
        # The burst of 10 passes (to an unknown user: not_found), the rest is refused.
        assert 15 <= len(limited) <= 20
        assert {a["id"] for a in limited} <= {f"f{i}" for i in range(30)}
        assert all(a["code"] in ("not_found", "rate_limited") for a in answers)
        time.sleep(0.5)  # the bucket refills: the connection is usable again
        sock.ping()
    finally:
        sock.close()


def test_connections_per_user_are_capped(limited_server: EmbeddedServer) -> None:
    (bob,) = register_users(limited_server.base_url, 1)
    url = limited_server.base_url.replace("http", "ws") + f"/ws?token={bob.token}"
    first, second = websocket.create_connection(url), websocket.create_connection(url)
    try:
        with pytest.raises(websocket.WebSocketBadStatusException) as refused:
            websocket.create_connection(url)
        assert refused.value.status_code == 429
        assert b"rate_limited" in refused.value.resp_body
    finally:
        first.close()
        second.close()
