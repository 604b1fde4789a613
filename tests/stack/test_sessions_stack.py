"""Sessions on the production path: a logout on one gateway closes the
session's sockets on the other within a second (the word crosses Redis's
gateway channel, routed by etcd); tickets live in Redis, any gateway redeems."""

from __future__ import annotations

import time

import pytest
import websocket

from imchat.client import ApiClient
from tests.support.sockets import Closed, RawSocket

from .conftest import Stack

pytestmark = [pytest.mark.integration, pytest.mark.e2e]


def test_a_logout_on_one_gateway_closes_sockets_on_the_other(stack: Stack) -> None:
    alice = stack.user()
    other = stack.api(0).login(alice.username, "password123")  # Stack.user's
    gone, kept = RawSocket(stack.url(1), alice.token), RawSocket(stack.url(1), other.token)
    try:
        assert gone.recv()["type"] == kept.recv()["type"] == "synced"
        started = time.monotonic()
        stack.api(0).logout(alice.token)
        with pytest.raises(Closed) as closed:
            gone.recv(timeout=1.0)
        assert closed.value.code == 4401
        assert time.monotonic() - started < 1.0
        kept.ping()
    finally:
        kept.close()
        gone.ws.shutdown()


def test_a_ticket_from_one_gateway_opens_a_socket_on_the_other(stack: Stack) -> None:
    alice = stack.user()
    ticket = ApiClient(stack.url(0)).ws_ticket(alice.token)
    url = stack.url(1).replace("http://", "ws://") + f"/ws?ticket={ticket}"
    ws = websocket.create_connection(url, timeout=5)
    try:
        assert '"synced"' in ws.recv()
    finally:
        ws.close()
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        websocket.create_connection(url.replace(stack.url(1)[7:], stack.url(0)[7:]), timeout=5)
    assert refused.value.status_code == 401  # used, whichever gateway is asked
