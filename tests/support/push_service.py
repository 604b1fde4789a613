"""A local Web Push service for the tests: an HTTP server on 127.0.0.1 that
receives what imchat sends to browsers' endpoints (RFC 8030), checks the
VAPID signature (RFC 8292) against the server's public key, and decrypts the
payload (RFC 8291, ``aes128gcm``) with a browser's key pair made by the test.

``PushService.browser(behaviour)`` makes one browser: a P-256 key pair, a
16-byte auth secret and an endpoint on this server, answered as the
behaviour says: ``"ok"`` (201), ``"gone"`` (410), ``"missing"`` (404) or
``"slow"`` (201 after ``SLOW_SECONDS``). Every request is recorded, also
those that fail a check (with the reason), so a test sees exactly what came.
"""

from __future__ import annotations

import base64
import json
import os
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import http_ece
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

SLOW_SECONDS = 5.0
STATUS = {"ok": 201, "gone": 410, "missing": 404, "slow": 201}


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass
class Browser:
    """One browser profile's push subscription and the secrets behind it."""

    endpoint: str
    behaviour: str
    private_key: ec.EllipticCurvePrivateKey
    auth_secret: bytes

    @property
    def subscription(self) -> dict[str, Any]:
        """What ``PushSubscription.toJSON()`` gives in a browser."""
        point = self.private_key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        return {
            "endpoint": self.endpoint,
            "expirationTime": None,
            "keys": {"p256dh": b64url(point), "auth": b64url(self.auth_secret)},
        }


@dataclass
class Received:
    """One request to an endpoint."""

    endpoint: str
    at: float
    headers: dict[str, str]
    payload: dict[str, Any] | None = None
    claims: dict[str, Any] | None = None
    problem: str | None = None  # why a check failed; None when all passed
    answered: int = 0


@dataclass
class PushService:
    """The server; ``vapid_key`` (the imchat server's public key) is what every
    request's signature must verify with."""

    vapid_key: str = ""
    browsers: dict[str, Browser] = field(default_factory=dict)
    received: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> PushService:
        service = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                service._handle(self)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.origin = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def browser(self, behaviour: str = "ok") -> Browser:
        assert behaviour in STATUS, behaviour
        endpoint = f"{self.origin}/push/{behaviour}/{uuid.uuid4().hex}"
        made = Browser(endpoint, behaviour, ec.generate_private_key(ec.SECP256R1()), os.urandom(16))
        with self.lock:
            self.browsers[endpoint] = made
        return made

    def to(self, browser: Browser) -> list[Received]:
        """What came to ``browser``'s endpoint so far."""
        with self.lock:
            return [r for r in self.received if r.endpoint == browser.endpoint]

    def problems(self) -> list[str]:
        with self.lock:
            return [f"{r.endpoint}: {r.problem}" for r in self.received if r.problem]

    # ------------------------------------------------------------ serving
    def _handle(self, request: BaseHTTPRequestHandler) -> None:
        length = int(request.headers.get("Content-Length") or 0)
        body = request.rfile.read(length)
        endpoint = self.origin + request.path
        received = Received(endpoint, time.monotonic(), dict(request.headers.items()))
        with self.lock:
            browser = self.browsers.get(endpoint)
        if browser is None:
            received.problem = "unknown endpoint"
            received.answered = 404
        else:
            try:
                received.claims = self._verify_vapid(received.headers)
                received.payload = self._decrypt(browser, received.headers, body)
            except Exception as exc:  # recorded: the test fails on it
                received.problem = f"{type(exc).__name__}: {exc}"
        with self.lock:  # checked and decrypted: now the test may see it
            self.received.append(received)
        if browser is not None:
            if browser.behaviour == "slow":
                time.sleep(SLOW_SECONDS)
            received.answered = STATUS[browser.behaviour]
        request.send_response(received.answered)
        request.send_header("Content-Length", "0")
        request.end_headers()

    def _verify_vapid(self, headers: dict[str, str]) -> dict[str, Any]:
        """RFC 8292: ``Authorization: vapid t=<JWT>, k=<public key>``, ES256."""
        auth = _header(headers, "Authorization")
        scheme, _, params = auth.partition(" ")
        assert scheme.lower() == "vapid", f"Authorization scheme {scheme!r}"
        values = dict(p.strip().split("=", 1) for p in params.split(","))
        assert values["k"] == self.vapid_key, "signed with another key than the server's"
        point = b64url_decode(values["k"])
        public = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point)
        claims: dict[str, Any] = jwt.decode(
            values["t"],
            key=public,  # type: ignore[arg-type]
            algorithms=["ES256"],
            audience=self.origin,
            options={"require": ["aud", "exp", "sub"]},
        )
        assert claims["exp"] <= time.time() + 24 * 3600, "exp more than 24 h ahead"
        assert str(claims["sub"]).startswith(("mailto:", "https:")), claims["sub"]
        return claims

    def _decrypt(self, browser: Browser, headers: dict[str, str], body: bytes) -> dict[str, Any]:
        assert _header(headers, "Content-Encoding") == "aes128gcm"
        assert int(_header(headers, "TTL")) > 0
        plain = http_ece.decrypt(
            body,
            private_key=browser.private_key,
            auth_secret=browser.auth_secret,
            version="aes128gcm",
        )
        payload: dict[str, Any] = json.loads(plain)
        return payload


def _header(headers: dict[str, str], name: str) -> str:
    for key, value in headers.items():
        if key.lower() == name.lower():
            return value
    raise AssertionError(f"no {name} header")
