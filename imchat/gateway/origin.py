"""The ``Origin`` check of the WebSocket upgrade (cross-site WebSocket hijacking).

A browser sends ``Origin`` with every WebSocket handshake and lets any page
open a socket to any host, so the server must say which pages may. Allowed:

- no ``Origin`` header at all (not a browser: the client libraries, tools);
- the same origin: the Origin's host and port are the request's ``Host``
  (a missing port is the scheme's default);
- an origin listed in ``IMCHAT_ALLOWED_ORIGINS`` (comma-separated, e.g.
  ``https://chat.example.com,https://app.example.com``), needed when a proxy
  rewrites ``Host`` or the client is served from another origin;
- any origin when that list is ``*``.

Anything else (``null`` included) is refused with 403 before the handshake.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Response, current_app, request

from imchat.container import services_of
from imchat.errors import error_response

DEFAULT_PORTS = {"http": 80, "ws": 80, "https": 443, "wss": 443}


def normalize(origin: str) -> tuple[str, str, int] | None:
    """``scheme://host[:port]`` as (scheme, host, port); None when it is no such URL."""
    try:
        parts = urlsplit(origin.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS or not parts.hostname:
        return None
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
        return None
    return scheme, parts.hostname.lower(), port or DEFAULT_PORTS[scheme]


def allowed_origin_list(setting: str) -> list[str]:
    return [item.strip() for item in setting.split(",") if item.strip()]


def validate_allowed_origins(setting: str) -> None:
    """Raise ValueError on an entry that is neither ``*`` nor an http(s) origin."""
    for item in allowed_origin_list(setting):
        if item != "*" and normalize(item) is None:
            raise ValueError(
                f"IMCHAT_ALLOWED_ORIGINS: {item!r} is not an origin like https://chat.example.com"
            )


def same_origin(origin: tuple[str, str, int], host_header: str) -> bool:
    scheme, host, port = origin
    try:
        parts = urlsplit(f"//{host_header.strip()}")
        host_port = parts.port
    except ValueError:
        return False
    if not parts.hostname:
        return False
    return (parts.hostname.lower(), host_port or DEFAULT_PORTS[scheme]) == (host, port)


def origin_allowed(origin: str | None, host_header: str, setting: str) -> bool:
    if origin is None:
        return True
    listed = allowed_origin_list(setting)
    if "*" in listed:
        return True
    parsed = normalize(origin)
    if parsed is None:
        return False
    if same_origin(parsed, host_header):
        return True
    return any(normalize(item) == parsed for item in listed)


def check_upgrade_origin() -> Response | None:
    """A ``before_request`` hook: 403 for a ``/ws`` upgrade from a page not allowed."""
    if request.path != "/ws":
        return None
    setting = services_of(current_app).settings.allowed_origins
    origin = request.headers.get("Origin")
    if origin_allowed(origin, request.host, setting):
        return None
    return error_response(403, "forbidden", "origin not allowed")
