"""``GET /ws?ticket=...`` (or ``?token=...``): the WebSocket endpoint (flask-sock)."""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
from typing import Any

from flask import Flask, Response, current_app, g, request
from flask_sock import ConnectionClosed, Sock
from sqlalchemy.exc import SQLAlchemyError

from imchat.container import Services, services_of
from imchat.errors import APIError, error_response
from imchat.gateway.connection import Connection, TokenBucket
from imchat.gateway.dispatch import handle_frame
from imchat.gateway.hub import Gateway
from imchat.gateway.origin import check_upgrade_origin, validate_allowed_origins
from imchat.services import sessions
from imchat.services.auth import Identity, verify_access
from imchat.services.pending import load_pending
from imchat.wire.frames import ErrorFrame

log = logging.getLogger("imchat.gateway")
sock = Sock()
# Server keepalive: a ping every 25 s keeps idle connections open through proxies.
PING_INTERVAL = 25


def gateway_of(app: Flask) -> Gateway:
    """This process's gateway, started on first use (after a gunicorn fork)."""
    gateway = services_of(app).gateway
    gateway.ensure_started()
    return gateway


def init_app(app: Flask) -> None:
    app.config["SOCK_SERVER_OPTIONS"] = {
        "ping_interval": PING_INTERVAL,
        "max_message_size": services_of(app).settings.max_frame_bytes,
    }
    sock.init_app(app)
    # The Origin check first: a page that may not open the socket learns nothing more.
    validate_allowed_origins(services_of(app).settings.allowed_origins)
    app.before_request(check_upgrade_origin)
    app.before_request(_authenticate_upgrade)


def _authenticate_upgrade() -> Response | None:
    """Refuse the upgrade with 401 before the handshake when the ticket or token is bad."""
    if request.path != "/ws":
        return None
    services = services_of(current_app)
    try:
        g.ws_identity = _identity(services)
    except APIError as err:
        return error_response(err.status, err.code, err.message)
    cap = services.settings.max_connections_per_user
    if gateway_of(current_app).connection_count(g.ws_identity.user_id) >= cap:
        return error_response(429, "rate_limited", f"at most {cap} connections per user")
    return None


def _identity(services: Services) -> Identity:
    """A one-use ticket (no long-lived token in the URL), or the token itself."""
    ticket, token = request.args.get("ticket", ""), request.args.get("token", "")
    if ticket:
        return sessions.redeem_ticket(services, ticket)
    if token:
        return verify_access(services, token)
    raise APIError(401, "missing ticket or token", code="unauthorized")


@sock.route("/ws")
def websocket(ws: Any) -> None:
    gateway = gateway_of(current_app)
    settings = gateway.services.settings
    limit = TokenBucket(settings.frame_rate_per_second, settings.frame_burst)
    # Every write to the socket, ours and simple_websocket's own (pings, pongs,
    # close), goes through one lock: gevent refuses two greenlets writing one
    # socket at once, and interleaved frames would corrupt the stream.
    ws.sock = SerializedSocket(ws.sock)
    identity: Identity = g.ws_identity
    conn = Connection(ws, identity.user_id, limit, identity.session_id)
    tcp = server_socket(request.environ, ws)
    request.environ["imchat.websocket"] = True
    gateway.attach(conn)
    try:
        conn.finish_sync(load_pending(gateway.services, conn.user_id))
        while True:
            handle_frame(gateway, conn, ws.receive())
    except ConnectionClosed:
        pass
    except SQLAlchemyError as err:
        # Pending messages could not be read: say so, and let the client reconnect.
        log.warning("pending messages of %s unreadable: %s", conn.user_id, err)
        conn.send_frame(ErrorFrame("unavailable", "database unavailable"))
        with contextlib.suppress(ConnectionClosed, OSError):
            ws.close(reason=1011, message="database unavailable")
    finally:
        conn.closed = True
        gateway.detach(conn)
        _close_cleanly(ws, tcp)


class SerializedSocket:
    """A socket whose writes take turns (and are written whole)."""

    def __init__(self, sock: Any) -> None:
        self._sock = sock
        self._write = threading.Lock()

    def send(self, data: bytes) -> int:
        with self._write:
            self._sock.sendall(data)
        return len(data)

    def sendall(self, data: bytes) -> None:
        self.send(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


def server_socket(environ: dict[str, Any], ws: Any) -> Any:
    """The socket the WSGI server itself holds for this connection.

    Under gevent's own server simple_websocket works on a dup of it and
    closes that dup when the handshake ends; shutting the server's socket
    down is what ends the TCP connection (no extra descriptor is kept).
    """
    if "gunicorn.socket" in environ:
        return environ["gunicorn.socket"]
    rfile = getattr(environ.get("wsgi.input"), "rfile", None)
    raw = getattr(rfile, "raw", None)
    return getattr(raw, "_sock", None) or ws.sock


def _close_cleanly(ws: Any, tcp: Any) -> None:
    """Finish the close handshake and shut the TCP connection down, so that a
    client's close returns at once instead of waiting out its timeout."""
    with contextlib.suppress(ConnectionClosed, OSError):
        if ws.connected:
            ws.close()
    with contextlib.suppress(OSError):
        tcp.shutdown(socket.SHUT_RDWR)
