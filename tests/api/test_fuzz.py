"""Random and near-valid bodies and query strings on every route: never a 500,
never a non-JSON answer."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import pytest
from flask import Flask
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from werkzeug.test import TestResponse

from tests.support.queries import query_for

from .history_support import Chat, direct_id, group_id_of
from .support import ApiClient, User, assert_error

# Any JSON document, small.
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)
# Text that is valid JSON but not storable UTF-8, and other awkward strings.
odd_text = st.sampled_from(["\ud800", "a\x00b", "", " ", "é" * 40, "x" * 300, "abc\n"])


def field(valid: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mostly a plausible value, sometimes anything at all."""
    return st.one_of(valid, valid, odd_text, json_values)


def near_valid(**fields: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    """A body with some of the route's fields, and now and then an unknown one."""
    return st.fixed_dictionaries(
        {}, optional={**{k: field(v) for k, v in fields.items()}, "extra": json_values}
    )


def routes(ids: st.SearchStrategy[str]) -> list[tuple[str, str, st.SearchStrategy[Any]]]:
    """(method, path template, body strategy) of every API route."""
    username = st.from_regex(r"\A[a-z0-9_]{3,32}\Z") | st.sampled_from(["fuzz_user"])
    profile = {
        "display_name": st.text(max_size=70) | st.none(),
        "email": st.emails() | st.none(),
        "avatar_url": st.sampled_from(["https://cdn.example.com/a.png", "ftp://x/y", "http://"]),
    }
    return [
        (
            "POST",
            "/auth/register",
            near_valid(username=username, password=st.text(max_size=140), **profile),
        ),
        ("POST", "/auth/login", near_valid(username=username, password=st.text(max_size=140))),
        ("GET", "/users/me", st.none()),
        ("PATCH", "/users/me", near_valid(**profile)),
        ("GET", "/users/{user}", st.none()),
        (
            "POST",
            "/groups",
            near_valid(name=st.text(max_size=110), member_ids=st.lists(ids, max_size=4)),
        ),
        ("GET", "/groups", st.none()),
        ("GET", "/groups/{group}", st.none()),
        ("GET", "/groups/{group}/members", st.none()),
        (
            "POST",
            "/groups/{group}/members",
            near_valid(user_id=ids, role=st.sampled_from(["admin", "member", "owner"])),
        ),
        (
            "PATCH",
            "/groups/{group}/members/{user}",
            near_valid(role=st.sampled_from(["owner", "admin", "member"])),
        ),
        ("DELETE", "/groups/{group}/members/{user}", st.none()),
        ("GET", "/conversations", st.none()),
        ("GET", "/conversations/{conversation}", st.none()),
        ("GET", "/conversations/{conversation}/messages", st.none()),
        ("GET", "/openapi.json", st.none()),
        ("POST", "/users/me/push-subscriptions", push_subscriptions()),
        ("DELETE", "/users/me/push-subscriptions", near_valid(endpoint=endpoints)),
        ("GET", "/push/vapid-public-key", st.none()),
        ("GET", "/conversations/{conversation}/push", st.none()),
        ("PUT", "/conversations/{conversation}/push", near_valid(push=st.booleans() | st.none())),
    ]


endpoints = st.sampled_from(
    ["https://push.example.com/s/1", "http://127.0.0.1:9/x", "https://", "https://[::1]/x"]
) | st.text(max_size=30)
# A real browser key and secret now and then, so that some bodies get as far as the store.
P256DH = "BEJllBblpQ7k3MenpXX9CO9HcbEWZyKgD9wCelSuKVnaWq8_fvizeWk4RyDMN8ae6yXfuNB7WRnAh2LG--bqNCs"
AUTH = "AAAAAAAAAAAAAAAAAAAAAA"


def push_subscriptions() -> st.SearchStrategy[dict[str, Any]]:
    keys = st.fixed_dictionaries(
        {},
        optional={
            "p256dh": st.sampled_from([P256DH, "AAAA", P256DH[:-2]]) | st.text(max_size=20),
            "auth": st.sampled_from([AUTH, "AAAA"]) | st.text(max_size=20),
            "extra": json_values,
        },
    )
    return near_valid(
        endpoint=endpoints,
        keys=keys,
        expirationTime=st.none() | st.integers() | st.floats() | st.text(max_size=5),
    )


@pytest.mark.unit
def test_no_route_answers_500_or_non_json(app: Flask) -> None:
    api = ApiClient(app)
    owner, member = api.user("owner"), api.user("member")
    group_id = api.group(owner, member)
    chat = Chat(api)
    chat.send(owner, to=member)
    chat.send(member, group=group_id)
    conversations = [direct_id(owner, member), group_id_of(group_id)]
    real_ids = [owner.user_id, member.user_id, group_id, "me", *conversations]
    ids = st.sampled_from(real_ids) | st.text(max_size=40)
    table = routes(ids)

    @settings(
        max_examples=500,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(
        route=st.sampled_from(table),
        data=st.data(),
        caller=st.sampled_from([owner, member, None]),
        raw=st.booleans(),
    )
    def check(
        route: tuple[str, str, Any], data: st.DataObject, caller: User | None, raw: bool
    ) -> None:
        method, template, bodies = route
        path = template.format(
            group=quote(data.draw(ids), safe=""),
            user=quote(data.draw(ids), safe=""),
            conversation=quote(data.draw(ids), safe=""),
        )
        if method == "GET":  # the query strings of the list and history routes, and others
            path += data.draw(query_for(path))
        body = data.draw(st.one_of(bodies, json_values))
        payload = data.draw(st.binary(max_size=40)) if raw else json.dumps(body).encode()
        # A new made-up client address per example keeps most calls under the rate limits.
        api.client.environ_base["REMOTE_ADDR"] = (
            f"198.51.{data.draw(st.integers(0, 255))}.{data.draw(st.integers(0, 255))}"
        )
        response = api.call(method, path, caller, data=payload, content_type="application/json")
        assert_json_answer(response, f"{method} {path} {payload!r}")

    check()


def assert_json_answer(response: TestResponse, request: str) -> None:
    assert response.status_code < 500, (request, response.get_data(as_text=True))
    if response.status_code != 204:
        assert response.mimetype == "application/json", (request, response.status_code)
        assert isinstance(response.json, (dict, list))


@pytest.mark.unit
def test_no_query_string_of_the_history_routes_answers_500(app: Flask) -> None:
    """The list and history routes, always with a member's token, so that every
    query string reaches validation and the stores (cursors, seqs, limits)."""
    api = ApiClient(app)
    alice, bob = api.user("alice"), api.user("bob")
    group_id = api.group(alice, bob)
    chat = Chat(api)
    chat.deliver(*(chat.envelope(alice, f"m{n}", to=bob) for n in range(5)))
    chat.send(bob, group=group_id)
    conversations = st.sampled_from([direct_id(alice, bob), group_id_of(group_id)])
    paths = st.sampled_from(["/conversations", "/groups"]) | conversations.flatmap(
        lambda c: st.sampled_from([f"/conversations/{c}", f"/conversations/{c}/messages"])
    )

    @settings(max_examples=400, deadline=None, database=None)
    @given(path=paths, data=st.data(), caller=st.sampled_from([alice, bob]))
    def check(path: str, data: st.DataObject, caller: User) -> None:
        query = data.draw(query_for(path))
        response = api.call("GET", path + query, caller)
        assert_json_answer(response, f"GET {path}{query}")
        if response.status_code >= 400:
            assert assert_error(response, response.status_code)["code"]

    check()
