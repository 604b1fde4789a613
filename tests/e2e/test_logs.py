"""One message can be followed through the logs by its msg_id."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tests.support.clients import register_users
from tests.support.server import EmbeddedServer, run_server
from tests.support.sockets import RawSocket

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def tracing_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedServer]:
    env = {"IMCHAT_LOG_LEVEL": "DEBUG", "IMCHAT_LOG_FORMAT": "json"}
    yield from run_server(tmp_path_factory.mktemp("tracing"), env)


def test_a_message_is_traced_from_socket_to_delivery(tracing_server: EmbeddedServer) -> None:
    alice, bob = register_users(tracing_server.base_url, 2)
    a = RawSocket(tracing_server.base_url, alice.token)
    b = RawSocket(tracing_server.base_url, bob.token)
    try:
        a.recv_type("synced"), b.recv_type("synced")
        a.send({"type": "send", "id": "trace-me", "to": bob.user_id, "body": "hi"})
        msg_id = a.recv_type("ack")["msg_id"]
        b.recv_type("msg")
    finally:
        a.close(), b.close()
    lines = [
        json.loads(line) for line in tracing_server.output().splitlines() if line.startswith("{")
    ]
    trail = [line["message"] for line in lines if line.get("msg_id") == msg_id]
    assert trail[0] == "accepted: on the bus"
    assert trail[1].startswith("assigned seq 1, in history, pushed to 1")
    assert trail[2] == "delivered to a socket"
    assert {line["logger"] for line in lines if line.get("msg_id") == msg_id} == {
        "imchat.gateway",
        "imchat.delivery",
    }
