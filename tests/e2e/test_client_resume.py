"""The Python client resumes: a send made while the server was gone goes out
again on reconnect, with its id, and is acked once."""

from __future__ import annotations

import pytest

from imchat.client import ApiClient
from tests.support.clients import register_users
from tests.support.server import EmbeddedServer

pytestmark = pytest.mark.e2e


def test_a_send_during_an_outage_is_resent_on_reconnect(
    own_server: EmbeddedServer,
) -> None:
    alice, bob = register_users(own_server.base_url, 2)
    api = ApiClient(own_server.base_url)
    chat = api.connect(alice.token)
    chat.wait_synced()
    before = chat.send("before", to=bob.user_id)

    own_server.stop(kill=True)
    cid = chat.send_nowait("while the server was gone", to=bob.user_id)
    assert cid in chat.unacked
    own_server.start()

    chat.reconnect()
    ack = chat.wait_ack(cid)
    assert ack["seq"] == before["seq"] + 1
    assert not chat.unacked
    chat.close()

    with api.connect(bob.token) as bob_chat:
        assert bob_chat.wait_synced() == 2
        bodies = [bob_chat.receive()["body"] for _ in range(2)]
    assert bodies == ["before", "while the server was gone"]
