"""Sessions over real sockets against the embedded default: an ended
session's WebSockets close with 4401 within a second (logout, password
change, a reused refresh token), or at the gateway's next sweep when the
word was lost; one-use tickets open sockets without a token in the URL."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import websocket

from imchat.client import ApiClient, ChatError, Session, TokenKeeper
from tests.support.clients import PASSWORD
from tests.support.server import EmbeddedServer, run_server
from tests.support.sockets import Closed, RawSocket, Sockets

pytestmark = pytest.mark.e2e

Users = Callable[[int], list[Session]]
SWEEP = 1


@pytest.fixture(scope="module")
def embedded_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedServer]:
    env = {"IMCHAT_SESSION_SWEEP_SECONDS": str(SWEEP)}
    yield from run_server(Path(tmp_path_factory.mktemp("sessions")), env)


def closed_within(conn: RawSocket, seconds: float) -> int | None:
    """The close code the server sends within ``seconds`` (frames before it skipped)."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            conn.recv(timeout=max(deadline - time.monotonic(), 0.01))
        except Closed as closed:
            return closed.code
        except websocket.WebSocketTimeoutException:
            raise AssertionError(f"still open after {seconds} s") from None


def ws_url(server: EmbeddedServer, query: str) -> str:
    return server.base_url.replace("http://", "ws://") + "/ws?" + query


def upgrade_status(server: EmbeddedServer, query: str) -> int:
    try:
        websocket.create_connection(ws_url(server, query), timeout=5).close()
    except websocket.WebSocketBadStatusException as refused:
        return int(refused.status_code)
    return 101


def test_logout_closes_that_sessions_sockets_with_4401_within_a_second(
    api: ApiClient, users: Users, sockets: Sockets
) -> None:
    (alice,) = users(1)
    phone = api.login(alice.username, PASSWORD)
    laptop_socket, phone_socket = sockets.raw(alice), sockets.raw(phone)
    started = time.monotonic()
    api.logout(alice.token)
    assert closed_within(laptop_socket, 1.0) == 4401
    assert time.monotonic() - started < 1.0
    phone_socket.ping()  # the other session lives on
    with pytest.raises(ChatError) as refused:
        api.conversations(alice.token)
    assert refused.value.status == 401


def test_a_password_change_closes_every_other_sessions_sockets(
    embedded_server: EmbeddedServer, api: ApiClient, users: Users, sockets: Sockets
) -> None:
    (alice,) = users(1)
    other = api.login(alice.username, PASSWORD)
    mine, theirs = sockets.raw(alice), sockets.raw(other)
    api.change_password(alice.token, PASSWORD, "another long secret")
    assert closed_within(theirs, 1.0) == 4401
    mine.ping()
    assert upgrade_status(embedded_server, f"token={other.token}") == 401


def test_a_reused_refresh_token_ends_the_session_and_its_sockets(
    api: ApiClient, users: Users, sockets: Sockets
) -> None:
    (alice,) = users(1)
    conn = sockets.raw(alice)
    renewed = api.refresh(alice)
    conn.ping()  # a refresh is no end: the socket stays
    with pytest.raises(ChatError):
        api.refresh(alice)  # the old refresh token, again: stolen
    assert closed_within(conn, 1.0) == 4401
    with pytest.raises(ChatError):
        api.conversations(renewed.token)


def test_a_lost_word_is_made_up_for_by_the_sweep(
    embedded_server: EmbeddedServer, users: Users, sockets: Sockets
) -> None:
    (alice,) = users(1)
    conn = sockets.raw(alice)
    # Ended behind the gateways' backs, as if the channel had lost the word.
    with sqlite3.connect(embedded_server.sqlite_path) as db:
        db.execute(
            "UPDATE sessions SET ended_at = CURRENT_TIMESTAMP WHERE user_id = ?", (alice.user_id,)
        )
    assert closed_within(conn, SWEEP + 2.0) == 4401


def test_a_ticket_opens_one_socket_once(
    embedded_server: EmbeddedServer, api: ApiClient, users: Users
) -> None:
    (alice,) = users(1)
    ticket = api.ws_ticket(alice.token)
    ws = websocket.create_connection(ws_url(embedded_server, f"ticket={ticket}"), timeout=5)
    try:
        assert '"synced"' in ws.recv()
    finally:
        ws.close()
    assert upgrade_status(embedded_server, f"ticket={ticket}") == 401  # used
    assert upgrade_status(embedded_server, "ticket=made-up") == 401
    assert upgrade_status(embedded_server, f"token={alice.token}") == 101  # still works
    assert upgrade_status(embedded_server, "") == 401


def test_the_client_connects_with_tickets_and_refreshes_silently(
    api: ApiClient, users: Users
) -> None:
    (alice,) = users(1)
    stale = Session(alice.user_id, alice.username, alice.token, alice.refresh_token, 0.0)
    keeper = TokenKeeper(api, stale)  # "expired": the first use refreshes
    with api.connect(keeper) as chat:
        chat.wait_synced()
        assert keeper.session.refresh_token != alice.refresh_token  # it refreshed
        assert "ticket=" in chat.last_url and "token=" not in chat.last_url
        chat.reconnect()
        assert chat.wait_synced() == 0
