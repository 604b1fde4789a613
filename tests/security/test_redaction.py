"""imchat/access_log.py: what gunicorn's access log gets of a URL or header
that carries a credential (the live check is tests/e2e/test_logs.py)."""

from __future__ import annotations

import datetime
from types import SimpleNamespace

import pytest
from gunicorn.config import Config

from imchat.access_log import RedactingLogger, redact_query, redact_url

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("url", "logged"),
    [
        ("/ws?token=abc", "/ws?token=[redacted]"),
        ("/ws?ticket=abc&x=1", "/ws?ticket=[redacted]&x=1"),
        ("/ws?x=1&TOKEN=abc", "/ws?x=1&TOKEN=[redacted]"),
        ("/ws?%74oken=abc", "/ws?%74oken=[redacted]"),  # Flask reads it as token
        ("/ws?to+ken=abc&token+=abc", "/ws?to+ken=abc&token+=[redacted]"),
        (
            "/ws?access_token=a&refresh_token=b",
            "/ws?access_token=[redacted]&refresh_token=[redacted]",
        ),
        ("/ws?token=a&token=b", "/ws?token=[redacted]&token=[redacted]"),
        ("/ws?token=abc#frag", "/ws?token=[redacted]#frag"),
        ("/ws?token", "/ws?token"),
        ("/ws", "/ws"),
        ("/api/v1/conversations?limit=5", "/api/v1/conversations?limit=5"),
        ("/tokens?tokenizer=1", "/tokens?tokenizer=1"),
    ],
)
def test_redact_url(url: str, logged: str) -> None:
    assert redact_url(url) == logged


def test_redact_query() -> None:
    assert redact_query("token=abc") == "token=[redacted]"
    assert redact_query("") == ""


def test_every_atom_is_redacted() -> None:
    logger = RedactingLogger(Config())
    environ = {
        "REQUEST_METHOD": "GET",
        "RAW_URI": "/ws?token=secret1",
        "REQUEST_URI": "/ws?token=secret1",
        "QUERY_STRING": "token=secret1",
        "PATH_INFO": "/ws",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "HTTP_REFERER": "https://x.example/?ticket=secret1",
        "HTTP_AUTHORIZATION": "Bearer secret1",
        "HTTP_COOKIE": "s=secret1",
    }
    request = [("AUTHORIZATION", "Bearer secret1"), ("COOKIE", "s=secret1"), ("HOST", "h")]
    response = SimpleNamespace(status="401 UNAUTHORIZED", headers=[], sent=10)
    atoms = logger.atoms(response, request, environ, datetime.timedelta(seconds=1))
    leaked = {name: value for name, value in atoms.items() if "secret1" in str(value)}
    assert leaked == {}
    assert atoms["r"] == "GET /ws?token=[redacted] HTTP/1.1"
    assert atoms["{authorization}i"] == "[redacted]"
    assert atoms["{host}i"] == "h"
    assert environ["RAW_URI"] == "/ws?token=secret1"  # the request's own environ is untouched
