"""Bad tokens are refused with 401 on every authenticated route and at the
WebSocket upgrade (CONTRACT.md; docs/api.md, docs/protocol.md).

Tokens are made the way an attacker would: signed with another key, signed
with the server's own secret (read from <data_dir>/secret_key, as someone who
stole it would) but expired, tampered with, ``alg: none``, another algorithm,
and the valid token of a user whose row was deleted from the SQLite file.
"""

from __future__ import annotations

import base64
import json
import sqlite3
import time
from collections.abc import Callable

import jwt
import pytest
import websocket

from imchat.client import Session
from tests.support.clients import assert_error_shape, http_call, register_users
from tests.support.server import EmbeddedServer
from tests.support.sockets import Closed, RawSocket

pytestmark = pytest.mark.e2e

# Every authenticated route; ids that exist are filled in per user.
ROUTES = [
    ("GET", "/api/v1/users/me", None),
    ("PATCH", "/api/v1/users/me", b'{"display_name": "x"}'),
    ("GET", "/api/v1/users/{me}", None),
    ("GET", "/api/v1/users/by-username/{name}", None),
    ("POST", "/api/v1/groups", b'{"name": "g"}'),
    ("GET", "/api/v1/groups/{group}", None),
    ("GET", "/api/v1/groups/{group}/members", None),
    ("POST", "/api/v1/groups/{group}/members", b'{"user_id": "{me}"}'),
    ("PATCH", "/api/v1/groups/{group}/members/{me}", b'{"role": "admin"}'),
    ("DELETE", "/api/v1/groups/{group}/members/{me}", None),
]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _claims(user: Session, **changes: int | str) -> dict[str, int | str]:
    now = int(time.time())
    return {"sub": user.user_id, "iat": now, "exp": now + 3600, **changes}


def _flip(segment: str) -> str:
    """One character of the segment changed (not the last: its low bits may be padding)."""
    i = len(segment) // 2
    return segment[:i] + ("A" if segment[i] != "A" else "B") + segment[i + 1 :]


def forged(user: Session, secret: str) -> str:
    return jwt.encode(_claims(user), "not the server's key " * 3, algorithm="HS256")


def expired(user: Session, secret: str) -> str:
    past = int(time.time()) - 7200
    return jwt.encode(_claims(user, iat=past, exp=past + 60), secret, algorithm="HS256")


def tampered_payload(user: Session, secret: str) -> str:
    head, payload, signature = user.token.split(".")
    return f"{head}.{_flip(payload)}.{signature}"


def other_subject(user: Session, secret: str) -> str:
    """The payload rewritten to another subject, the signature kept."""
    head, _, signature = user.token.split(".")
    payload = _b64(json.dumps(_claims(user, sub="someone-else")).encode())
    return f"{head}.{payload}.{signature}"


def alg_none(user: Session, secret: str) -> str:
    head = _b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    return f"{head}.{_b64(json.dumps(_claims(user)).encode())}."


def alg_hs512(user: Session, secret: str) -> str:
    """The right secret but an algorithm the server does not accept."""
    return jwt.encode(_claims(user), secret, algorithm="HS512")


def no_expiry(user: Session, secret: str) -> str:
    now = int(time.time())
    return jwt.encode({"sub": user.user_id, "iat": now}, secret, algorithm="HS256")


def unknown_subject(user: Session, secret: str) -> str:
    return jwt.encode(_claims(user, sub="0" * 32), secret, algorithm="HS256")


BAD_TOKENS: dict[str, Callable[[Session, str], str]] = {
    "forged with another key": forged,
    "expired": expired,
    "tampered payload": tampered_payload,
    "payload of another subject": other_subject,
    "alg none": alg_none,
    "alg HS512": alg_hs512,
    "no exp claim": no_expiry,
    "subject that never existed": unknown_subject,
}


@pytest.fixture(scope="module")
def cast(embedded_server: EmbeddedServer) -> tuple[Session, str]:
    (user,) = register_users(embedded_server.base_url, 1)
    answer = http_call(
        embedded_server.base_url,
        "POST",
        "/api/v1/groups",
        b'{"name": "mine"}',
        {"Authorization": f"Bearer {user.token}"},
    )
    assert answer.status == 201
    return user, answer.json()["group_id"]


def assert_refused_everywhere(
    server: EmbeddedServer, user: Session, group: str, token: str
) -> None:
    """401 with the contract's body on every route, and at the WebSocket upgrade."""
    for method, template, body in ROUTES:
        fill = {"me": user.user_id, "name": user.username, "group": group}
        path = template.format(**fill)
        data = body.replace(b"{me}", user.user_id.encode()) if body else None
        answer = http_call(
            server.base_url, method, path, data, {"Authorization": f"Bearer {token}"}
        )
        error = assert_error_shape(answer)
        assert (answer.status, error["code"]) == (401, "unauthorized"), (method, path, answer)
        assert answer.headers.get("WWW-Authenticate", "").startswith("Bearer")
    assert_upgrade_refused(server, token)


def assert_upgrade_refused(server: EmbeddedServer, token: str) -> None:
    try:
        conn = RawSocket(server.base_url, token)
    except websocket.WebSocketBadStatusException as refused:
        assert refused.status_code == 401
        assert json.loads(refused.resp_body)["error"]["code"] == "unauthorized"
        return
    try:  # the contract's other answer: a 4401 close before any frame
        with pytest.raises(Closed) as closed:
            conn.recv()
        assert closed.value.code == 4401
    finally:
        conn.ws.shutdown()


def test_the_valid_token_works_everywhere(
    embedded_server: EmbeddedServer, cast: tuple[Session, str]
) -> None:
    """The control: the same calls with the real token are not refused."""
    user, group = cast
    for method, template, _ in ROUTES[:4] + ROUTES[5:7]:
        path = template.format(me=user.user_id, name=user.username, group=group)
        answer = http_call(
            embedded_server.base_url,
            method,
            path,
            b"{}" if method == "PATCH" else None,
            {"Authorization": f"Bearer {user.token}"},
        )
        assert answer.status == 200, (method, path, answer)
    conn = RawSocket(embedded_server.base_url, user.token)
    try:
        assert conn.recv()["type"] == "synced"
    finally:
        conn.close()


@pytest.mark.parametrize("case", list(BAD_TOKENS))
def test_bad_token_is_refused_on_rest_and_at_the_upgrade(
    case: str, embedded_server: EmbeddedServer, cast: tuple[Session, str]
) -> None:
    user, group = cast
    token = BAD_TOKENS[case](user, embedded_server.secret_key)
    assert token != user.token
    assert_refused_everywhere(embedded_server, user, group, token)
    embedded_server.assert_no_traceback()


@pytest.mark.parametrize(
    "header",
    ["", "Bearer", "Bearer ", "Basic dXNlcjpwYXNz", "Token {token}", "Bearer {token} extra"],
)
def test_malformed_authorization_headers_get_401(
    header: str, embedded_server: EmbeddedServer, cast: tuple[Session, str]
) -> None:
    user, _ = cast
    value = header.format(token=user.token)
    answer = http_call(
        embedded_server.base_url, "GET", "/api/v1/users/me", None, {"Authorization": value}
    )
    assert (answer.status, assert_error_shape(answer)["code"]) == (401, "unauthorized")


def test_a_deleted_users_token_is_refused(embedded_server: EmbeddedServer) -> None:
    """There is no delete endpoint: the row goes straight out of the SQLite file."""
    (user,) = register_users(embedded_server.base_url, 1)
    me = http_call(
        embedded_server.base_url,
        "GET",
        "/api/v1/users/me",
        None,
        {"Authorization": f"Bearer {user.token}"},
    )
    assert me.status == 200  # the token works while the user exists
    with sqlite3.connect(embedded_server.sqlite_path, timeout=10) as db:
        deleted = db.execute("DELETE FROM users WHERE user_id = ?", (user.user_id,)).rowcount
    assert deleted == 1
    assert_refused_everywhere(embedded_server, user, "no-such-group", user.token)
    embedded_server.assert_no_traceback()
