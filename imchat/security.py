"""Security headers on every response (one ``after_request`` hook).

Every response, the web client's page and files as much as the API's JSON,
carries a Content-Security-Policy that allows no inline script, no inline
style and no framing, ``X-Content-Type-Options: nosniff`` and
``Referrer-Policy: no-referrer``. Everything but the web client (``/`` and
``/static/...``, ``/sw.js``, which are revalidated, see :mod:`imchat.web`; their errors
are the API's JSON) is also ``Cache-Control: no-store``: API answers carry
users' data and tokens.
"""

from __future__ import annotations

from flask import Flask, Response, request

# Scripts, styles, fetches and WebSockets from this origin only (CSP Level 3's
# 'self' covers ws:// and wss:// of the page's own host), images from it and
# data: URLs (the favicon), nothing inline, no plugins, never in a frame.
CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "worker-src 'self'",
        "manifest-src 'self'",
        "object-src 'none'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
        "form-action 'self'",
    )
)

HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # frame-ancestors for browsers that predate it.
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
}


def is_web_client(path: str) -> bool:
    """The web client's page and files: cached with revalidation, not no-store."""
    return path in ("/", "/sw.js") or path.startswith("/static/")


def add_security_headers(response: Response) -> Response:
    for name, value in HEADERS.items():
        response.headers.setdefault(name, value)
    if not (is_web_client(request.path) and response.status_code < 400):
        response.headers["Cache-Control"] = "no-store"
    return response


def init_app(app: Flask) -> None:
    app.after_request(add_security_headers)
