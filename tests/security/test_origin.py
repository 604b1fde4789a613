"""The WebSocket upgrade checks ``Origin`` (cross-site WebSocket hijacking):
real ``python app.py`` servers, real sockets, the Origin header set by the
client as a browser would (imchat/gateway/origin.py, docs/operations.md)."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator

import pytest
import websocket

from imchat.client import ChatConnection
from imchat.gateway.origin import origin_allowed, validate_allowed_origins
from tests.support.clients import register_users
from tests.support.server import EmbeddedServer, run_server

pytestmark = pytest.mark.e2e

ALLOWED = "https://chat.example.com, http://app.example.net:8080"


@pytest.fixture(scope="module")
def listed_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedServer]:
    env = {"IMCHAT_ALLOWED_ORIGINS": ALLOWED}
    yield from run_server(tmp_path_factory.mktemp("origins"), env)


@pytest.fixture(scope="module")
def any_origin_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedServer]:
    yield from run_server(tmp_path_factory.mktemp("any-origin"), {"IMCHAT_ALLOWED_ORIGINS": "*"})


def connect(server: EmbeddedServer, token: str, origin: str | None) -> websocket.WebSocket:
    """Open /ws with ``origin`` (None: no Origin header at all)."""
    url = server.base_url.replace("http://", "ws://") + f"/ws?token={token}"
    if origin is None:
        return websocket.create_connection(url, timeout=5, suppress_origin=True)
    return websocket.create_connection(url, timeout=5, origin=origin)


def opens(server: EmbeddedServer, token: str, origin: str | None) -> bool:
    """True when the socket opens and works (its first frame is ``synced``)."""
    ws = connect(server, token, origin)
    try:
        return bool(json.loads(ws.recv())["type"] == "synced")
    finally:
        ws.close()


def refused(server: EmbeddedServer, token: str, origin: str) -> None:
    with pytest.raises(websocket.WebSocketBadStatusException) as caught:
        connect(server, token, origin)
    err = caught.value
    assert err.status_code == 403, err
    body = json.loads(err.resp_body or b"{}")
    assert body == {"error": {"code": "forbidden", "message": "origin not allowed"}}


def test_default_allows_same_origin_and_no_origin_only(embedded_server: EmbeddedServer) -> None:
    (alice,) = register_users(embedded_server.base_url, 1)
    port = embedded_server.port
    assert opens(embedded_server, alice.token, None)  # not a browser
    assert opens(embedded_server, alice.token, f"http://127.0.0.1:{port}")
    # Host names no scheme: host and port are what is compared (behind a TLS
    # proxy the page is https and Host the same name).
    assert opens(embedded_server, alice.token, f"https://127.0.0.1:{port}")
    for origin in (
        "https://evil.example",
        f"http://evil.example:{port}",
        f"http://127.0.0.1:{port + 1}",
        f"http://localhost:{port}",
        "null",  # sandboxed iframes, file: pages
        "not an origin",
    ):
        refused(embedded_server, alice.token, origin)


def test_refusal_comes_before_the_token_is_looked_at(embedded_server: EmbeddedServer) -> None:
    refused(embedded_server, "not-a-token", "https://evil.example")


def test_listed_origins_are_allowed(listed_server: EmbeddedServer) -> None:
    (alice,) = register_users(listed_server.base_url, 1)
    assert opens(listed_server, alice.token, "https://chat.example.com")
    assert opens(listed_server, alice.token, "https://CHAT.example.com:443")
    assert opens(listed_server, alice.token, "http://app.example.net:8080")
    assert opens(listed_server, alice.token, f"http://127.0.0.1:{listed_server.port}")
    assert opens(listed_server, alice.token, None)
    refused(listed_server, alice.token, "http://chat.example.com")
    refused(listed_server, alice.token, "https://chat.example.com.evil.example")
    refused(listed_server, alice.token, "http://app.example.net")


def test_star_allows_any_origin(any_origin_server: EmbeddedServer) -> None:
    (alice,) = register_users(any_origin_server.base_url, 1)
    assert opens(any_origin_server, alice.token, "https://evil.example")
    assert opens(any_origin_server, alice.token, "null")


def test_a_bad_allow_list_is_refused_at_start() -> None:
    validate_allowed_origins("")
    validate_allowed_origins("*")
    validate_allowed_origins(ALLOWED)
    for bad in ("chat.example.com", "https://chat.example.com/app", "ftp://x", "https://"):
        with pytest.raises(ValueError, match="IMCHAT_ALLOWED_ORIGINS"):
            validate_allowed_origins(bad)


@pytest.mark.parametrize(
    ("origin", "host", "allowed"),
    [
        ("http://example.com", "example.com", True),
        ("http://example.com", "example.com:80", True),
        ("https://example.com", "example.com", True),
        ("https://example.com", "example.com:443", True),
        ("https://example.com", "example.com:80", False),
        ("http://example.com:8000", "example.com:8000", True),
        ("http://[::1]:8000", "[::1]:8000", True),
        ("http://example.com:8000", "example.com", False),
        ("http://example.com", "", False),
        ("http://example.com:99999", "example.com:99999", False),
    ],
)
def test_same_origin_rule(origin: str, host: str, allowed: bool) -> None:
    assert origin_allowed(origin, host, "") is allowed


def test_the_python_client_sends_no_origin(monkeypatch: pytest.MonkeyPatch) -> None:
    """imchat.client is no browser: its handshake has no Origin header, so a
    server behind a proxy that rewrites Host still takes it."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    handshake: list[bytes] = []

    def answer_once() -> None:
        conn, _ = listener.accept()
        with conn:
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(4096)
                if not chunk:
                    break
                data += chunk
            handshake.append(data)
            conn.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")

    # The socket's URL as is, without first asking this bare listener for a ticket.
    monkeypatch.setattr(ChatConnection, "_url", lambda self: f"{self.ws_base}?token=a-token")
    thread = threading.Thread(target=answer_once, daemon=True)
    thread.start()
    try:
        with pytest.raises(websocket.WebSocketBadStatusException):
            ChatConnection(f"http://127.0.0.1:{port}", "a-token", timeout=5)
        thread.join(5)
    finally:
        listener.close()
    (request,) = handshake
    headers = [line.split(b":", 1)[0].lower() for line in request.split(b"\r\n")[1:] if line]
    assert b"host" in headers and b"sec-websocket-key" in headers, request
    assert b"origin" not in headers, request
