"""Credentials never reach the access log.

The WebSocket upgrade takes its credential in the URL (``/ws?token=...``,
``?ticket=...``), and proxies and servers log URLs. :class:`RedactingLogger`
is gunicorn's logger with every URL-bearing atom of the access log (the
request line, the query, ``RAW_URI`` and friends among the environ atoms)
and the ``Authorization`` / ``Cookie`` request headers redacted, whatever
``access_log_format`` an operator chooses. ``deploy/gunicorn.conf.py``
names it as ``logger_class``. (``python app.py`` writes no access log, and
gevent masks the environ it prints with an error.)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote_plus

from gunicorn.glogging import Logger

REDACTED = "[redacted]"
# Query parameters whose value is a credential (names compared decoded, without case).
SECRET_PARAMETERS = frozenset({"token", "ticket", "access_token", "refresh_token"})
URL_ENVIRON_KEYS = ("RAW_URI", "REQUEST_URI", "QUERY_STRING", "HTTP_REFERER")
SECRET_HEADERS = frozenset({"authorization", "cookie", "proxy-authorization"})


def redact_query(query: str) -> str:
    """``a=1&token=abc`` -> ``a=1&token=[redacted]``."""
    parts = []
    for part in query.split("&"):
        name, eq, _value = part.partition("=")
        if eq and unquote_plus(name).strip().lower() in SECRET_PARAMETERS:
            part = f"{name}={REDACTED}"
        parts.append(part)
    return "&".join(parts)


def redact_url(url: str) -> str:
    """A path or URL with the credentials of its query redacted."""
    head, mark, rest = url.partition("?")
    if not mark:
        return url
    query, hash_mark, fragment = rest.partition("#")
    return f"{head}?{redact_query(query)}{hash_mark}{fragment}"


def redacted_environ(environ: Mapping[str, Any]) -> dict[str, Any]:
    copy = dict(environ)
    for key in URL_ENVIRON_KEYS:
        if isinstance(copy.get(key), str):
            copy[key] = redact_query(copy[key]) if key == "QUERY_STRING" else redact_url(copy[key])
    for key in ("HTTP_AUTHORIZATION", "HTTP_COOKIE", "HTTP_PROXY_AUTHORIZATION"):
        if key in copy:
            copy[key] = REDACTED
    return copy


class RedactingLogger(Logger):
    """gunicorn's logger, with credentials out of every access-log atom."""

    def atoms(self, resp: Any, req: Any, environ: Mapping[str, Any], request_time: Any) -> Any:
        atoms = super().atoms(resp, req, redacted_environ(environ), request_time)
        for name in SECRET_HEADERS:
            if f"{{{name}}}i" in atoms:
                atoms[f"{{{name}}}i"] = REDACTED
        return atoms
