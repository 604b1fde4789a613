"""The WebSocket frame layer over real sockets against the embedded default
(CONTRACT.md, WebSocket): bad frames, the size limit, ping, the token check
at the upgrade and a quick close."""

from __future__ import annotations

import contextlib
import json
import socket
import time
from collections.abc import Callable
from typing import Any

import pytest
import websocket

from imchat.client import ChatConnection, Session
from tests.support.clients import register_users
from tests.support.server import EmbeddedServer
from tests.support.sockets import Closed, RawSocket, Sockets

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def pair(embedded_server: EmbeddedServer) -> list[Session]:
    """Two users shared by the tests of this module: no test here stores a message."""
    return register_users(embedded_server.base_url, 2)


def test_ping_gets_pong(pair: list[Session], sockets: Sockets) -> None:
    conn = sockets.raw(pair[0])
    for _ in range(3):
        conn.send({"type": "ping"})
        assert conn.recv() == {"type": "pong"}
    conn.assert_quiet(0.2)


# ------------------------------------------------------------- bad frames
def _send(**fields: Any) -> dict[str, Any]:
    return {"type": "send", **fields}


# (raw frame, the id the error must echo or None). ``TO`` stands for a real user id.
TO = "<recipient>"
BAD_FRAMES: dict[str, tuple[Any, str | None]] = {
    "not JSON": ("{this is not json", None),
    "JSON array": ("[1, 2, 3]", None),
    "JSON string": ('"ping"', None),
    "no type": ({"id": "c-notype"}, "c-notype"),
    "unknown type": ({"type": "shout", "id": "c-shout"}, "c-shout"),
    "send without id": (_send(to=TO, body="hi"), None),
    "send with a numeric id": (_send(id=7, to=TO, body="hi"), None),
    "id of 65 chars": (_send(id="i" * 65, to=TO, body="hi"), "i" * 65),
    "empty body": (_send(id="c-empty", to=TO, body=""), "c-empty"),
    "body of 4001 chars": (_send(id="c-long", to=TO, body="b" * 4001), "c-long"),
    "body not a string": (_send(id="c-num", to=TO, body=42), "c-num"),
    "both to and group": (_send(id="c-both", to=TO, group="g1", body="hi"), "c-both"),
    "neither to nor group": (_send(id="c-none", body="hi"), "c-none"),
    "delivered with seq 0": ({"type": "delivered", "conversation_id": "d:a:b", "seq": 0}, None),
    "delivered with a string seq": (
        {"type": "delivered", "conversation_id": "d:a:b", "seq": "3"},
        None,
    ),
    "delivered without conversation": ({"type": "delivered", "seq": 3}, None),
}


@pytest.mark.parametrize("case", list(BAD_FRAMES))
def test_bad_frame_gets_bad_request_and_the_connection_stays_open(
    case: str, pair: list[Session], sockets: Sockets
) -> None:
    sender, recipient = pair
    frame, echoed_id = BAD_FRAMES[case]
    if isinstance(frame, dict) and frame.get("to") == TO:
        frame = {**frame, "to": recipient.user_id}
    conn = sockets.raw(sender)

    conn.send(frame if isinstance(frame, str) else json.dumps(frame))

    error = conn.recv_type("error")
    assert error["code"] == "bad_request"
    assert isinstance(error["message"], str) and error["message"]
    assert error.get("id") == echoed_id
    conn.ping()  # the very next frame: nothing else was sent, and the socket still works


def test_boundary_frames_are_accepted(pair: list[Session], sockets: Sockets) -> None:
    """The largest valid id and body are accepted (and then sent as a message)."""
    sender, recipient = pair
    conn = sockets.raw(sender)
    at_recipient = sockets.raw(recipient, synced=None)
    at_recipient.recv_type("synced")
    cid, body = "i" * 64, "b" * 4000

    conn.send(_send(id=cid, to=recipient.user_id, body=body))

    ack = conn.recv_type("ack")
    assert ack["id"] == cid
    msg = at_recipient.recv_type("msg")
    assert (msg["msg_id"], msg["body"]) == (ack["msg_id"], body)


def test_frame_over_64_kib_gets_too_large_or_close_1009(
    pair: list[Session], sockets: Sockets
) -> None:
    conn = sockets.raw(pair[0])
    huge = json.dumps({"type": "ping", "pad": "x" * (64 * 1024)})

    conn.send(huge)

    answer: dict[str, Any] | Closed
    try:
        answer = conn.recv()
    except Closed as closed:
        answer = closed
    if isinstance(answer, Closed):
        # The close path: a 1009 close, then the server ends the TCP connection
        # without sending anything more (no stray HTTP response, no frame).
        assert answer.code == 1009
        rest = _rest_of_stream(conn.ws.sock)
        assert rest == b"", f"after the 1009 close the server sent {rest!r}"
    else:
        # The error path: a too_large error and an open, usable connection.
        assert (answer["type"], answer["code"]) == ("error", "too_large")
        conn.ping()


def _rest_of_stream(sock: socket.socket | None, timeout: float = 1.0) -> bytes:
    """Whatever the server still sends before it ends the TCP connection.

    After the close handshake the server must close the TCP connection
    (RFC 6455 7.1.1); clients such as the ``websockets`` library wait for that.
    """
    assert sock is not None, "the client dropped the connection itself"
    sock.settimeout(timeout)
    data = b""
    with contextlib.suppress(TimeoutError):
        while chunk := sock.recv(65536):
            data += chunk
        return data
    pytest.fail(
        f"the server kept the TCP connection open {timeout}s after the close "
        f"handshake (received {data!r} meanwhile)"
    )


# ------------------------------------------------------------------ tokens
def _tampered(token: str) -> str:
    """The token with its signature changed: well formed, but forged."""
    head, _, signature = token.rpartition(".")
    return f"{head}.{'A' if signature[0] != 'A' else 'B'}{signature[1:]}"


TOKENS: dict[str, Callable[[Session], str | None]] = {
    "missing": lambda user: None,
    "empty": lambda user: "",
    "garbage": lambda user: "garbage",
    "expired-looking garbage": lambda user: "eyJhbGciOiJIUzI1NiJ9.eyJleHAiOjF9.c2lnbmF0dXJl",
    "forged signature": lambda user: _tampered(user.token),
}


@pytest.mark.parametrize("case", list(TOKENS))
def test_bad_token_is_refused_at_the_upgrade(
    case: str, pair: list[Session], embedded_server: EmbeddedServer
) -> None:
    token = TOKENS[case](pair[0])
    try:
        conn = RawSocket(embedded_server.base_url, token)
    except websocket.WebSocketBadStatusException as refused:
        assert refused.status_code == 401
        return
    # The other allowed answer: a close with 4401 before any other frame.
    try:
        with pytest.raises(Closed) as closed:
            conn.recv()
        assert closed.value.code == 4401
    finally:
        conn.ws.shutdown()


# ------------------------------------------------------------------- close
def test_client_close_returns_at_once(pair: list[Session], sockets: Sockets) -> None:
    """The close handshake is answered and the TCP connection ended at once."""
    conn = sockets.raw(pair[0])
    started = time.monotonic()
    conn.ws.send_close()
    reply = conn.ws.recv_frame()  # the raw frame: no automatic second close
    assert reply.opcode == websocket.ABNF.OPCODE_CLOSE
    assert _rest_of_stream(conn.ws.sock) == b""
    assert time.monotonic() - started < 0.5


def test_chat_connection_close_returns_at_once(
    pair: list[Session], embedded_server: EmbeddedServer
) -> None:
    """The project's own client closes quickly too (its reader thread must not
    swallow the server's close reply that close() waits for)."""
    conn = ChatConnection(embedded_server.base_url, pair[0].token, timeout=5)
    assert conn.wait_synced() == 0
    started = time.monotonic()
    conn.close()
    assert time.monotonic() - started < 0.5
