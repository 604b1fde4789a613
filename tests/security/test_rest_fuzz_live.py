"""REST fuzzing against the running server over real HTTP (CONTRACT.md, HTTP API).

Every route of docs/api.md gets random, near-valid, huge, deeply nested,
odd-unicode and garbage bodies (and every GET near-valid and garbled query
strings: limits, cursors, seqs), with a valid token, a bad one and none.
Whatever the input: never a 500, every error a JSON body of the contract's
shape, every success JSON (but 204), and no traceback in the server log.
tests/api/test_fuzz.py does the same in-process; this one goes through the
real server, its socket, its WSGI layer and its threads.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from imchat.client import ApiClient, Session
from tests.support.clients import Answer, assert_error_shape, bearer, http_call, register_users
from tests.support.queries import query_for
from tests.support.server import EmbeddedServer

pytestmark = pytest.mark.e2e

MAX_BODY = 64 * 1024
ODD_TEXT = [
    "\u202eevil",
    "zero\u200bwidth",
    "nul\x00byte",
    "\ufeff",
    "\U0001f600",
    "\u0645\u0631\u062d\u0628\u0627",
    "e\u0301\u0301",
    "\r\nX-Injected: 1",
    "",
    " ",
]
json_leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=2**63),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=30),
    st.sampled_from(ODD_TEXT),
)
json_values = st.recursive(
    json_leaves,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner),
    max_leaves=12,
)


def field(valid: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mostly plausible, sometimes odd text, sometimes anything at all."""
    return st.one_of(valid, valid, st.sampled_from(ODD_TEXT), json_values)


def near_valid(**fields: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {}, optional={**{k: field(v) for k, v in fields.items()}, "extra": json_values}
    )


def _nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


# Raw bodies: garbage, odd encodings, deep nesting, sizes around the 64 KiB limit.
raw_bodies = st.one_of(
    st.binary(max_size=200),
    st.text(max_size=200).map(lambda t: t.encode("utf-8", "surrogatepass")),
    st.sampled_from(
        [
            b"",
            b"null",
            b"[]",
            b'"text"',
            b"1e400",
            b"{",
            b'{"a":',
            b"\xff\xfe{}",
            b'\xef\xbb\xbf{"name": "bom"}',
            b'{"name": "\\ud800"}',
            b'{"username": "\\udfff", "password": "\\ud800\\ud800\\ud800\\ud800"}',
            b'{"name": "x", "name": "y"}',
            _nested(1_000),
            _nested(10_000),
            _nested(30_000),  # 60,000 bytes: under the limit, still nested too deep
            _nested(100_000),  # over 64 KiB: 413
            b'{"name": ' + _nested(20_000) + b"}",
            b'{"name": "' + b"x" * (MAX_BODY - 12) + b'"}',  # exactly 64 KiB
            b'{"name": "' + b"x" * MAX_BODY + b'"}',
        ]
    ),
)


def routes(ids: st.SearchStrategy[str]) -> list[tuple[str, str, st.SearchStrategy[Any]]]:
    """(method, path template, body strategy) of every route of docs/api.md."""
    username = st.from_regex(r"\A[a-z0-9_]{3,32}\Z") | st.text(max_size=40)
    password = st.text(min_size=0, max_size=140)
    profile = {
        "display_name": st.text(max_size=70) | st.none() | st.just("d" * 10_000),
        "email": st.emails() | st.none() | st.just("a@" + "b" * 300 + ".com"),
        "avatar_url": st.sampled_from(
            ["https://cdn.example.com/a.png", "ftp://x/y", "http://", "javascript:alert(1)"]
        ),
    }
    members = st.lists(ids, max_size=5) | st.just(["x"] * 1001)
    roles = st.sampled_from(["owner", "admin", "member", "OWNER", "root", ""])
    return [
        (
            "POST",
            "/api/v1/auth/register",
            near_valid(username=username, password=password, **profile),
        ),
        ("POST", "/api/v1/auth/login", near_valid(username=username, password=password)),
        ("GET", "/api/v1/users/me", st.none()),
        ("PATCH", "/api/v1/users/me", near_valid(**profile)),
        ("GET", "/api/v1/users/{user}", st.none()),
        ("GET", "/api/v1/users/by-username/{user}", st.none()),
        ("POST", "/api/v1/groups", near_valid(name=st.text(max_size=110), member_ids=members)),
        ("GET", "/api/v1/groups", st.none()),
        ("GET", "/api/v1/groups/{group}", st.none()),
        ("GET", "/api/v1/groups/{group}/members", st.none()),
        ("POST", "/api/v1/groups/{group}/members", near_valid(user_id=ids, role=roles)),
        ("PATCH", "/api/v1/groups/{group}/members/{user}", near_valid(role=roles)),
        ("DELETE", "/api/v1/groups/{group}/members/{user}", st.none()),
        ("GET", "/api/v1/conversations", st.none()),
        ("GET", "/api/v1/conversations/{conversation}", st.none()),
        ("GET", "/api/v1/conversations/{conversation}/messages", st.none()),
        ("GET", "/api/v1/openapi.json", st.none()),
        ("GET", "/healthz", st.none()),
        ("GET", "/readyz", st.none()),
    ]


def check_answer(answer: Answer, request: str) -> None:
    """No 500, JSON always (but 204), the contract's shape for every error."""
    context = f"{request} -> {answer.status} {answer.body[:300]!r}"
    assert answer.status < 500 or answer.status == 503, context
    if answer.status == 204:
        assert answer.body == b"", context
        return
    assert answer.content_type == "application/json", context
    body = json.loads(answer.body)
    if answer.status >= 400:
        assert_error_shape(answer)
        if answer.status == 401:
            assert answer.headers.get("WWW-Authenticate", "").startswith("Bearer"), context
    else:
        assert isinstance(body, (dict, list)), context


@pytest.fixture(scope="module")
def cast(embedded_server: EmbeddedServer) -> tuple[Session, Session, str, list[str]]:
    """Two users, a group of both, and a message in their direct conversation and
    in the group, so the history routes have something to page through."""
    owner, member = register_users(embedded_server.base_url, 2)
    client = ApiClient(embedded_server.base_url)
    group = client.create_group(owner.token, "fuzzed", [member.user_id])
    with client.connect(owner.token) as chat:
        direct = chat.send("fuzz me", to=member.user_id)["conversation_id"]
        in_group = chat.send("and me", group=group["group_id"])["conversation_id"]
    return owner, member, group["group_id"], [direct, in_group]


def test_no_route_answers_500_or_non_json(
    embedded_server: EmbeddedServer, cast: tuple[Session, Session, str, list[str]]
) -> None:
    owner, member, group_id, conversations = cast
    real = [owner.user_id, member.user_id, group_id, "me", owner.username, *conversations]
    odd_ids = st.sampled_from(["..", "../..", "a/b", "%2e%2e", "x" * 300, "\u202e", "' OR 1=1 --"])
    ids = st.sampled_from(real) | st.text(max_size=40) | odd_ids
    table = routes(ids)
    tokens = st.sampled_from([owner.token, member.token, None, "garbage", owner.token + "x"])

    @settings(
        max_examples=1000,
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(
        route=st.sampled_from(table),
        data=st.data(),
        token=tokens,
        raw=st.booleans(),
    )
    def check(
        route: tuple[str, str, Any], data: st.DataObject, token: str | None, raw: bool
    ) -> None:
        method, template, bodies = route
        path = template.format(
            group=quote(data.draw(ids), safe=""),
            user=quote(data.draw(ids), safe=""),
            conversation=quote(data.draw(ids), safe=""),
        )
        if method == "GET":  # query strings: the list's and history's, and stray ones
            path += data.draw(query_for(path))
        body = data.draw(st.one_of(bodies, json_values))
        payload = data.draw(raw_bodies) if raw else json.dumps(body).encode()
        headers = {
            "Content-Type": data.draw(
                st.sampled_from(
                    ["application/json", "text/plain", "application/x-www-form-urlencoded", ""]
                )
            )
        }
        if token is not None:
            headers |= bearer(token)
        sent = None if method in ("GET", "DELETE") and not raw else payload
        answer = http_call(embedded_server.base_url, method, path, sent, headers)
        check_answer(answer, f"{method} {path} {payload[:200]!r}")

    check()
    embedded_server.assert_no_traceback()


@pytest.mark.parametrize(
    "method",
    ["PUT", "OPTIONS", "TRACE", "CONNECT", "PROPFIND", "BREW"],
)
def test_odd_methods_get_a_json_answer(method: str, embedded_server: EmbeddedServer) -> None:
    for path in ("/api/v1/groups", "/api/v1/users/me", "/api/v1/nowhere", "/"):
        answer = http_call(embedded_server.base_url, method, path, b"{}")
        if method == "OPTIONS" and answer.status == 200:
            # Flask's automatic OPTIONS answer: no body, the methods in Allow.
            assert answer.body == b"" and answer.headers.get("Allow"), answer
            continue
        check_answer(answer, f"{method} {path}")
    embedded_server.assert_no_traceback()
