"""Injection attempts in every string field, against the running server.

Each hostile string is either stored and returned verbatim or refused with
400; ids that carry ``/``, ``..`` or quotes are unknown (404), never a 500;
and afterwards the users table still works (register, login, read).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest

from imchat.client import Session
from tests.support.clients import (
    PASSWORD,
    assert_error_shape,
    bearer,
    http_call,
    new_username,
    register_users,
)
from tests.support.server import EmbeddedServer
from tests.support.sockets import Sockets

pytestmark = pytest.mark.e2e

HOSTILE = [
    "' OR '1'='1",
    "'; DROP TABLE users; --",
    '"; DROP TABLE groups; --',
    "x' UNION SELECT password_hash FROM users --",
    "/* comment */ --",
    "%s %s %(user_id)s %d",
    "{0} {} {user_id!r} {.__class__}",
    "<script>alert(1)</script>",
    '"><img src=x onerror=alert(1)>',
    "../../etc/passwd",
    "..\\..\\windows\\win.ini",
    "line\r\nX-Injected: 1",
    "nul\x00byte",
    "${jndi:ldap://x/a}",
    "$(reboot) `reboot`",
    "\\",
    "\u202etxt.exe",
]


def api(
    server: EmbeddedServer, method: str, path: str, user: Session | None = None, body: Any = None
) -> Any:
    data = None if body is None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json", **(bearer(user.token) if user else {})}
    return http_call(server.base_url, method, "/api/v1" + path, data, headers)


def verbatim_or_400(answer: Any, field: str, value: str, ok: int) -> None:
    if answer.status == 400:
        assert_error_shape(answer, 400)
        return
    assert answer.status == ok, (field, value, answer)
    assert answer.json()[field] == value, (field, value, answer.json())


@pytest.fixture(scope="module")
def pair(embedded_server: EmbeddedServer) -> list[Session]:
    return register_users(embedded_server.base_url, 2)


@pytest.mark.parametrize("value", HOSTILE)
def test_profile_and_group_fields_store_it_verbatim_or_refuse(
    value: str, embedded_server: EmbeddedServer, pair: list[Session]
) -> None:
    alice, bob = pair
    answer = api(embedded_server, "PATCH", "/users/me", alice, {"display_name": value})
    verbatim_or_400(answer, "display_name", value, 200)
    if answer.status == 200:  # read back by someone else, from the database
        seen = api(embedded_server, "GET", f"/users/{alice.user_id}", bob)
        assert seen.json()["display_name"] == value
    answer = api(embedded_server, "POST", "/groups", alice, {"name": value})
    verbatim_or_400(answer, "name", value, 201)
    if answer.status == 201:
        got = api(embedded_server, "GET", f"/groups/{answer.json()['group_id']}", alice)
        assert got.json()["name"] == value
    # Email and avatar: the validators decide; whatever passes comes back as sent.
    for field, candidate in (
        ("email", f"{value}@example.com"),
        ("avatar_url", f"https://example.com/{quote(value)}"),
        ("avatar_url", f"https://example.com/{value}"),
    ):
        answer = api(embedded_server, "PATCH", "/users/me", alice, {field: candidate})
        verbatim_or_400(answer, field, candidate, 200)
    embedded_server.assert_no_traceback()


@pytest.mark.parametrize("value", HOSTILE)
def test_account_fields_refuse_or_fail_cleanly(value: str, embedded_server: EmbeddedServer) -> None:
    answer = api(
        embedded_server, "POST", "/auth/register", body={"username": value, "password": PASSWORD}
    )
    assert (answer.status, assert_error_shape(answer)["code"]) == (400, "bad_request")
    answer = api(
        embedded_server, "POST", "/auth/login", body={"username": value, "password": value}
    )
    assert answer.status in (400, 401), answer  # 401 for storable text, 400 otherwise
    assert_error_shape(answer)
    # A hostile password is just a password.
    username = new_username()
    password = (value * 8)[:128] if len(value) < 8 else value
    answer = api(
        embedded_server,
        "POST",
        "/auth/register",
        body={"username": username, "password": password, "display_name": value},
    )
    verbatim_or_400(answer, "display_name", value, 201)
    if answer.status == 201:
        login = api(
            embedded_server,
            "POST",
            "/auth/login",
            body={"username": username, "password": password},
        )
        assert login.status == 200, login


@pytest.mark.parametrize("value", [*HOSTILE, "..", ".", "a/b", "x" * 5000])
def test_hostile_ids_in_paths_and_bodies_are_unknown(
    value: str, embedded_server: EmbeddedServer, pair: list[Session]
) -> None:
    alice, bob = pair
    group = api(embedded_server, "POST", "/groups", alice, {"name": "real"}).json()["group_id"]
    for encoded in {quote(value, safe=""), quote(value, safe="/")}:
        for path in (
            f"/users/{encoded}",
            f"/users/by-username/{encoded}",
            f"/groups/{encoded}",
            f"/groups/{encoded}/members",
            f"/groups/{group}/members/{encoded}",
        ):
            for method in ("GET", "DELETE", "PATCH"):
                body = {"role": "admin"} if method == "PATCH" else None
                answer = api(embedded_server, method, path, alice, body)
                # 404 for an unknown id; 405 where the route exists without that method.
                assert answer.status in (404, 405), (method, path, answer)
                assert_error_shape(answer)
    answer = api(embedded_server, "POST", f"/groups/{group}/members", alice, {"user_id": value})
    assert answer.status in (400, 404), answer
    assert_error_shape(answer)
    answer = api(
        embedded_server, "POST", "/groups", alice, {"name": "g", "member_ids": [value, bob.user_id]}
    )
    assert answer.status in (400, 404), answer
    if answer.status == 404:  # the unknown id is named back verbatim
        assert assert_error_shape(answer)["details"]["unknown_user_ids"] == [value]
    embedded_server.assert_no_traceback()


def test_crlf_never_reaches_a_response_header(embedded_server: EmbeddedServer) -> None:
    """A CR LF in a token or a path is data, not the end of a header."""
    crlf = quote("\r\nX-Injected: 1\r\n", safe="")
    for path in (f"/ws?token=abc{crlf}", f"/api/v1/users/{crlf}", f"/api/v1/{crlf}"):
        answer = http_call(embedded_server.base_url, "GET", path, None, bearer("abc"))
        assert answer.status in (401, 404), (path, answer)
        assert_error_shape(answer)
        assert not any(h.lower() == "x-injected" for h in answer.headers), answer.headers


@pytest.fixture
def opened(embedded_server: EmbeddedServer) -> Iterator[Sockets]:
    sockets = Sockets(embedded_server.base_url)
    yield sockets
    sockets.close_all()


def test_hostile_strings_in_frames(
    embedded_server: EmbeddedServer, pair: list[Session], opened: Sockets
) -> None:
    """As a body and an id: acked and delivered verbatim. As a recipient, a group
    or a conversation: unknown, and nothing breaks."""
    alice, bob = pair
    sender, at_bob = opened.raw(alice), opened.raw(bob, synced=None)
    at_bob.recv_type("synced")
    for i, value in enumerate(HOSTILE):
        cid = f"{i}:{value}"
        sender.send({"type": "send", "id": cid, "to": bob.user_id, "body": value})
        assert sender.recv_type("ack")["id"] == cid
        msg = at_bob.recv_type("msg")
        assert msg["body"] == value
        for target in ("to", "group"):
            sender.send({"type": "send", "id": cid, target: value, "body": "x"})
            error = sender.recv_type("error")
            assert (error["code"], error["id"]) == ("not_found", cid)
        sender.send({"type": "delivered", "conversation_id": value, "seq": 1})
        sender.ping()
    embedded_server.assert_no_traceback()


def test_the_users_table_still_works_afterwards(
    embedded_server: EmbeddedServer, pair: list[Session]
) -> None:
    """Runs last in this module: every hostile string above has been through it."""
    alice, _ = pair
    (fresh,) = register_users(embedded_server.base_url, 1)
    for user in (alice, fresh):
        me = api(embedded_server, "GET", "/users/me", user)
        assert me.status == 200 and me.json()["user_id"] == user.user_id
    answer = api(embedded_server, "GET", f"/users/by-username/{fresh.username}", alice)
    assert answer.status == 200 and answer.json()["user_id"] == fresh.user_id
    embedded_server.assert_no_traceback()
