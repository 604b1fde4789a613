"""/api/v1/users/me/blocks and the blocks service, on the embedded default
(unit) and on MariaDB + Redis (integration)."""

from __future__ import annotations

from typing import Any

import pytest

from imchat.backends.base import BackendUnavailable
from imchat.services import blocks as block_service

from .support import ApiClient, User, assert_error


def blocked(api: ApiClient, user: User) -> list[str]:
    response = api.call("GET", "/users/me/blocks", user)
    assert response.status_code == 200, response.json
    body: dict[str, Any] = response.json  # type: ignore[assignment]
    assert set(body) == {"blocked"}
    return list(body["blocked"])


def block(api: ApiClient, user: User, other: User) -> None:
    response = api.call("POST", "/users/me/blocks", user, json={"user_id": other.user_id})
    assert response.status_code == 201, response.json
    assert response.json == {"user_id": other.user_id}


def test_block_list_and_unblock(api: ApiClient) -> None:
    alice, bob, carol = api.user("alice"), api.user("bob"), api.user("carol")
    assert blocked(api, alice) == []
    block(api, alice, bob)
    block(api, alice, carol)
    assert sorted(blocked(api, alice)) == sorted([bob.user_id, carol.user_id])
    assert blocked(api, bob) == []  # a block is one-way in the list
    gone = api.call("DELETE", f"/users/me/blocks/{bob.user_id}", alice)
    assert gone.status_code == 204
    assert gone.get_data() == b""
    assert blocked(api, alice) == [carol.user_id]


def test_blocking_twice_and_unblocking_twice_are_idempotent(api: ApiClient) -> None:
    alice, bob = api.user("alice"), api.user("bob")
    block(api, alice, bob)
    block(api, alice, bob)
    assert blocked(api, alice) == [bob.user_id]
    for _ in range(2):
        assert api.call("DELETE", f"/users/me/blocks/{bob.user_id}", alice).status_code == 204
    assert blocked(api, alice) == []
    never = api.call("DELETE", "/users/me/blocks/nobody-at-all", alice)
    assert never.status_code == 204


def test_unknown_user_self_and_bad_bodies(api: ApiClient) -> None:
    alice = api.user("alice")
    unknown = api.call("POST", "/users/me/blocks", alice, json={"user_id": "no-such-user"})
    assert_error(unknown, 404)
    assert_error(api.call("POST", "/users/me/blocks", alice, json={"user_id": alice.user_id}), 400)
    for body in ({}, {"user_id": ""}, {"user_id": 7}, {"user_id": "x", "more": 1}, [1], "x"):
        assert_error(api.call("POST", "/users/me/blocks", alice, json=body), 400)
    assert blocked(api, alice) == []


def test_blocks_need_a_token(api: ApiClient) -> None:
    assert_error(api.call("GET", "/users/me/blocks"), 401)
    assert_error(api.call("POST", "/users/me/blocks", json={"user_id": "x"}), 401)
    assert_error(api.call("DELETE", "/users/me/blocks/x"), 401)


def test_blocked_between_either_way_follows_every_change(api: ApiClient) -> None:
    """Cached, and the cache follows: each answer is read once (warming it) before the change."""
    alice, bob = api.user("alice"), api.user("bob")
    services = api.services
    a, b = alice.user_id, bob.user_id
    assert not block_service.blocked_between(services, a, b)
    assert not block_service.blocked_between(services, b, a)
    block(api, alice, bob)
    assert block_service.blocked_between(services, a, b)
    assert block_service.blocked_between(services, b, a)
    assert block_service.blocked_of(services, a) == [b]
    assert block_service.blockers_of(services, b) == [a]
    assert api.call("DELETE", f"/users/me/blocks/{b}", alice).status_code == 204
    assert not block_service.blocked_between(services, a, b)
    assert not block_service.blocked_between(services, b, a)
    block(api, bob, alice)
    assert block_service.blocked_between(services, a, b)
    assert block_service.shunned(services, a) == {b}
    assert blocked(api, alice) == []


def test_a_cache_that_is_down_is_skipped(api: ApiClient, monkeypatch: pytest.MonkeyPatch) -> None:
    alice, bob = api.user("alice"), api.user("bob")
    cache = api.services.cache

    def down(*_: object) -> None:
        raise BackendUnavailable("cache down (test)")

    for name in ("get", "set", "delete"):
        monkeypatch.setattr(cache, name, down)
    block(api, alice, bob)
    assert blocked(api, alice) == [bob.user_id]
    assert block_service.blocked_between(api.services, bob.user_id, alice.user_id)
    assert api.call("DELETE", f"/users/me/blocks/{bob.user_id}", alice).status_code == 204
    assert not block_service.blocked_between(api.services, alice.user_id, bob.user_id)
