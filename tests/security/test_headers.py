"""Security headers (imchat/security.py): the web client's page and files carry
the Content-Security-Policy, nosniff and no-referrer; the API's and the health
endpoints' answers are also never stored. The page itself has nothing inline
that the policy would refuse (the browser tests catch what scripts do)."""

from __future__ import annotations

from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path

import pytest
from flask.testing import FlaskClient

from imchat.factory import create_app, services_of
from imchat.ops import migrate
from imchat.security import CONTENT_SECURITY_POLICY
from imchat.web import STATIC_DIR

pytestmark = pytest.mark.unit

WEB_CLIENT = ["/", "/sw.js", "/static/app.js", "/static/app.css", "/static/js/dom.js"]
API = [
    ("GET", "/api/v1/openapi.json", 200),
    ("GET", "/api/v1/users/me", 401),
    ("POST", "/api/v1/auth/login", 400),
    ("GET", "/api/v1/no/such/route", 404),
    ("GET", "/static/no-such-file.js", 404),
    ("GET", "/healthz", 200),
    ("GET", "/readyz", 200),
    ("GET", "/metrics", 200),
    ("GET", "/ws", 401),
]


@pytest.fixture
def client(tmp_path: Path) -> Iterator[FlaskClient]:
    cheap_hashes = {"password_hash_time_cost": 1, "password_hash_memory_kib": 1024}
    overrides = {"data_dir": str(tmp_path / "var"), **cheap_hashes}
    app = create_app(overrides=overrides, environ={})
    migrate.upgrade(services_of(app).settings)
    yield app.test_client()
    services_of(app).close()


def test_policy_refuses_inline_code_and_framing() -> None:
    directives = dict(d.split(" ", 1) for d in CONTENT_SECURITY_POLICY.split("; "))
    for name in ("default-src", "script-src", "style-src", "connect-src", "worker-src"):
        assert directives[name] == "'self'", name
    assert "unsafe" not in CONTENT_SECURITY_POLICY
    assert directives["frame-ancestors"] == "'none'"
    assert directives["base-uri"] == "'none'"
    assert directives["form-action"] == "'self'"
    assert directives["img-src"] == "'self' data:"


@pytest.mark.parametrize("path", WEB_CLIENT)
def test_web_client_carries_the_policy(client: FlaskClient, path: str) -> None:
    with client.get(path) as response:
        assert response.status_code == 200
        assert response.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["Referrer-Policy"] == "no-referrer"
        assert response.headers["X-Frame-Options"] == "DENY"
        # Revalidated on every load, but cacheable: not the API's no-store.
        assert response.headers["Cache-Control"] == "no-cache"


@pytest.mark.parametrize(("method", "path", "status"), API)
def test_api_answers_are_never_stored(
    client: FlaskClient, method: str, path: str, status: int
) -> None:
    with client.open(path, method=method) as response:
        assert response.status_code == status
        assert response.headers["Cache-Control"] == "no-store"
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["Referrer-Policy"] == "no-referrer"
        assert response.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY


def test_api_answer_of_a_signed_in_user_is_never_stored(client: FlaskClient) -> None:
    creds = {"username": "headers_user", "password": "a long password"}
    with client.post("/api/v1/auth/register", json=creds) as response:
        assert response.status_code == 201, response.get_json()
    with client.post("/api/v1/auth/login", json=creds) as response:
        assert response.status_code == 200, response.get_json()
        assert response.headers["Cache-Control"] == "no-store"  # it carries a token
        token = response.get_json()["access_token"]
    with client.get("/api/v1/users/me", headers={"Authorization": f"Bearer {token}"}) as response:
        assert response.status_code == 200
        assert response.headers["Cache-Control"] == "no-store"


class InlineFinder(HTMLParser):
    """What a Content-Security-Policy without 'unsafe-inline' refuses in markup."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []
        self._tag = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._tag = tag
        names = dict(attrs)
        if tag == "script" and not names.get("src"):
            self.found.append("inline <script>")
        if tag == "style":
            self.found.append("<style> element")
        for name, value in attrs:
            if name == "style":
                self.found.append(f"style attribute on <{tag}>")
            if name.startswith("on"):
                self.found.append(f"{name} handler on <{tag}>")
            if (value or "").strip().lower().startswith("javascript:"):
                self.found.append(f"javascript: URL in {name} of <{tag}>")


def test_page_has_no_inline_script_style_or_handler() -> None:
    for page in sorted(STATIC_DIR.rglob("*.html")):
        finder = InlineFinder()
        finder.feed(page.read_text())
        assert finder.found == [], f"{page.name}: {finder.found}"


def test_inline_finder_finds_what_the_policy_refuses() -> None:
    finder = InlineFinder()
    finder.feed(
        '<script>alert(1)</script><style>p{}</style><p style="x" onclick="y">'
        '<a href="javascript:z">'
    )
    assert len(finder.found) == 5, finder.found
