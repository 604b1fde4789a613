"""Groups: create, read, members, add, change role, remove and leave; events and cache."""

from __future__ import annotations

import json
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from flask import Flask

from imchat.backends.cache_redis import RedisCache
from imchat.config import load_settings
from imchat.errors import APIError
from imchat.services import groups as group_service

from .support import ApiClient, User, assert_error


def group_of(api: ApiClient, user: User, group_id: str) -> dict[str, Any]:
    response = api.call("GET", f"/groups/{group_id}", user)
    assert response.status_code == 200, response.json
    body: dict[str, Any] = response.json  # type: ignore[assignment]
    return body


def roles(api: ApiClient, user: User, group_id: str) -> dict[str, str]:
    response = api.call("GET", f"/groups/{group_id}/members", user)
    assert response.status_code == 200, response.json
    return {m["user_id"]: m["role"] for m in response.json}  # type: ignore[union-attr]


def summary(events: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    return [(e["event"], e["user_id"], e["role"]) for e in events]


# ------------------------------------------------------------------- create
def test_create_makes_the_caller_owner(api: ApiClient) -> None:
    owner, bob, carol = api.user(), api.user(), api.user()
    body = {"name": "Team", "member_ids": [bob.user_id, carol.user_id, bob.user_id, owner.user_id]}
    response = api.call("POST", "/groups", owner, json=body)
    assert response.status_code == 201
    group = response.json
    assert group["name"] == "Team" and group["owner_id"] == owner.user_id
    assert group["member_count"] == 3  # duplicates and the caller counted once
    assert roles(api, bob, group["group_id"]) == {
        owner.user_id: "owner",
        bob.user_id: "member",
        carol.user_id: "member",
    }
    events = api.events(group["group_id"])
    assert sorted(summary(events)) == sorted(
        [
            ("member_added", owner.user_id, "owner"),
            ("member_added", bob.user_id, "member"),
            ("member_added", carol.user_id, "member"),
        ]
    )
    assert all(e["actor_id"] == owner.user_id and isinstance(e["ts"], int) for e in events)
    assert all(
        sorted(e["member_ids"])
        == sorted(group_service.member_ids(api.services, group["group_id"]) or [])
        for e in events
    )


def test_create_without_member_ids_is_a_group_of_one(api: ApiClient) -> None:
    owner = api.user()
    response = api.call("POST", "/groups", owner, json={"name": "solo"})
    assert response.status_code == 201 and response.json["member_count"] == 1


@pytest.mark.parametrize(
    "body",
    [
        {"member_ids": []},
        {"name": "", "member_ids": []},
        {"name": "n" * 101, "member_ids": []},
        {"name": "ok", "member_ids": "not a list"},
        {"name": "ok", "member_ids": [1, 2]},
        {"name": "ok", "member_ids": [], "owner_id": "me"},
        {"name": None},
    ],
)
def test_create_rejects_invalid_bodies(api: ApiClient, body: dict[str, object]) -> None:
    assert_error(api.call("POST", "/groups", api.user(), json=body), 400)


def test_create_with_unknown_members_is_404_and_creates_nothing(api: ApiClient) -> None:
    owner, bob = api.user(), api.user()
    ghost = uuid.uuid4().hex
    response = api.call(
        "POST", "/groups", owner, json={"name": "x", "member_ids": [bob.user_id, ghost]}
    )
    error = assert_error(response, 404)
    assert error["details"]["unknown_user_ids"] == [ghost]


def test_create_needs_a_token(api: ApiClient) -> None:
    assert_error(api.call("POST", "/groups", json={"name": "x", "member_ids": []}), 401)


# --------------------------------------------------------------------- read
def test_members_read_the_group_and_others_are_403(api: ApiClient) -> None:
    owner, bob, stranger = api.user(), api.user(), api.user()
    group_id = api.group(owner, bob)
    assert group_of(api, bob, group_id)["member_count"] == 2
    assert_error(api.call("GET", f"/groups/{group_id}", stranger), 403)
    assert_error(api.call("GET", f"/groups/{group_id}/members", stranger), 403)
    assert_error(api.call("GET", f"/groups/{group_id}"), 401)


def test_unknown_group_is_404(api: ApiClient) -> None:
    user, missing = api.user(), uuid.uuid4().hex
    assert_error(api.call("GET", f"/groups/{missing}", user), 404)
    assert_error(api.call("GET", f"/groups/{missing}/members", user), 404)
    assert_error(api.call("POST", f"/groups/{missing}/members", user, json={"user_id": "x"}), 404)
    assert_error(
        api.call(
            "PATCH", f"/groups/{missing}/members/{user.user_id}", user, json={"role": "admin"}
        ),
        404,
    )
    assert_error(api.call("DELETE", f"/groups/{missing}/members/{user.user_id}", user), 404)


# ---------------------------------------------------------------------- add
def test_owner_adds_a_member_and_an_admin(api: ApiClient) -> None:
    owner, bob, carol = api.user(), api.user(), api.user()
    group_id = api.group(owner)
    api.events(group_id)
    response = api.call("POST", f"/groups/{group_id}/members", owner, json={"user_id": bob.user_id})
    assert response.status_code == 201
    assert response.json == {"group_id": group_id, "user_id": bob.user_id, "role": "member"}
    as_admin = {"user_id": carol.user_id, "role": "admin"}
    assert api.call("POST", f"/groups/{group_id}/members", owner, json=as_admin).status_code == 201
    assert group_of(api, bob, group_id)["member_count"] == 3
    events = api.events(group_id)
    assert summary(events) == [
        ("member_added", bob.user_id, "member"),
        ("member_added", carol.user_id, "admin"),
    ]
    assert set(events[-1]["member_ids"]) == {owner.user_id, bob.user_id, carol.user_id}


def test_admin_adds_members_but_not_admins(api: ApiClient) -> None:
    owner, admin, bob, carol = api.user(), api.user(), api.user(), api.user()
    group_id = api.group(owner)
    api.call(
        "POST",
        f"/groups/{group_id}/members",
        owner,
        json={"user_id": admin.user_id, "role": "admin"},
    )
    path = f"/groups/{group_id}/members"
    assert api.call("POST", path, admin, json={"user_id": bob.user_id}).status_code == 201
    assert_error(
        api.call("POST", path, admin, json={"user_id": carol.user_id, "role": "admin"}), 403
    )


def test_members_and_strangers_cannot_add(api: ApiClient) -> None:
    owner, bob, stranger, carol = api.user(), api.user(), api.user(), api.user()
    group_id = api.group(owner, bob)
    path = f"/groups/{group_id}/members"
    assert_error(api.call("POST", path, bob, json={"user_id": carol.user_id}), 403)
    assert_error(api.call("POST", path, stranger, json={"user_id": carol.user_id}), 403)
    assert_error(api.call("POST", path, json={"user_id": carol.user_id}), 401)


def test_adding_an_unknown_user_is_404_and_a_member_again_is_409(api: ApiClient) -> None:
    owner, bob = api.user(), api.user()
    group_id = api.group(owner, bob)
    path = f"/groups/{group_id}/members"
    assert_error(api.call("POST", path, owner, json={"user_id": uuid.uuid4().hex}), 404)
    assert_error(api.call("POST", path, owner, json={"user_id": bob.user_id}), 409)
    assert group_of(api, owner, group_id)["member_count"] == 2


@pytest.mark.parametrize(
    "body", [{}, {"user_id": ""}, {"user_id": "x", "role": "owner"}, {"user_id": "x", "extra": 1}]
)
def test_add_rejects_invalid_bodies(api: ApiClient, body: dict[str, object]) -> None:
    owner = api.user()
    group_id = api.group(owner)
    assert_error(api.call("POST", f"/groups/{group_id}/members", owner, json=body), 400)


# -------------------------------------------------------------- change role
def test_owner_changes_roles(api: ApiClient) -> None:
    owner, bob = api.user(), api.user()
    group_id = api.group(owner, bob)
    api.events(group_id)
    path = f"/groups/{group_id}/members/{bob.user_id}"
    response = api.call("PATCH", path, owner, json={"role": "admin"})
    assert response.status_code == 200 and response.json["role"] == "admin"
    assert roles(api, owner, group_id)[bob.user_id] == "admin"
    assert api.call("PATCH", path, owner, json={"role": "member"}).status_code == 200
    assert summary(api.events(group_id)) == [
        ("role_changed", bob.user_id, "admin"),
        ("role_changed", bob.user_id, "member"),
    ]


def test_only_the_owner_changes_roles(api: ApiClient) -> None:
    owner, admin, bob, stranger = api.user(), api.user(), api.user(), api.user()
    group_id = api.group(owner, bob)
    api.call(
        "POST",
        f"/groups/{group_id}/members",
        owner,
        json={"user_id": admin.user_id, "role": "admin"},
    )
    path = f"/groups/{group_id}/members/{bob.user_id}"
    for caller in (admin, bob, stranger):
        assert_error(api.call("PATCH", path, caller, json={"role": "admin"}), 403)
    assert roles(api, owner, group_id)[bob.user_id] == "member"


def test_role_of_a_non_member_is_404_and_of_the_owner_409(api: ApiClient) -> None:
    owner, bob, stranger = api.user(), api.user(), api.user()
    group_id = api.group(owner, bob)
    outsider = f"/groups/{group_id}/members/{stranger.user_id}"
    assert_error(api.call("PATCH", outsider, owner, json={"role": "admin"}), 404)
    self_path = f"/groups/{group_id}/members/{owner.user_id}"
    assert_error(api.call("PATCH", self_path, owner, json={"role": "member"}), 409)


@pytest.mark.parametrize("body", [{}, {"role": "king"}, {"role": None}, {"role": "admin", "x": 1}])
def test_role_change_rejects_invalid_bodies(api: ApiClient, body: dict[str, object]) -> None:
    owner, bob = api.user(), api.user()
    group_id = api.group(owner, bob)
    path = f"/groups/{group_id}/members/{bob.user_id}"
    assert_error(api.call("PATCH", path, owner, json=body), 400)


def test_owner_hands_the_group_over(api: ApiClient) -> None:
    owner, bob = api.user(), api.user()
    group_id = api.group(owner, bob)
    api.events(group_id)
    path = f"/groups/{group_id}/members/{bob.user_id}"
    assert api.call("PATCH", path, owner, json={"role": "owner"}).status_code == 200
    assert group_of(api, bob, group_id)["owner_id"] == bob.user_id
    assert roles(api, bob, group_id) == {bob.user_id: "owner", owner.user_id: "admin"}
    assert summary(api.events(group_id)) == [
        ("role_changed", bob.user_id, "owner"),
        ("role_changed", owner.user_id, "admin"),
    ]
    # The old owner is an admin now, and may no longer change roles.
    assert_error(api.call("PATCH", path, owner, json={"role": "member"}), 403)


# ------------------------------------------------------------ remove, leave
def test_owner_removes_a_member(api: ApiClient) -> None:
    owner, bob = api.user(), api.user()
    group_id = api.group(owner, bob)
    api.events(group_id)
    response = api.call("DELETE", f"/groups/{group_id}/members/{bob.user_id}", owner)
    assert response.status_code == 204 and response.get_data() == b""
    assert group_of(api, owner, group_id)["member_count"] == 1
    assert_error(api.call("GET", f"/groups/{group_id}", bob), 403)
    (event,) = api.events(group_id)
    assert (event["event"], event["user_id"], event["role"]) == (
        "member_removed",
        bob.user_id,
        "member",
    )
    assert event["member_ids"] == [owner.user_id]  # the gateway adds user_id itself


def test_admin_removes_plain_members_only(api: ApiClient) -> None:
    owner, admin, other_admin, bob = api.user(), api.user(), api.user(), api.user()
    group_id = api.group(owner, bob)
    for user in (admin, other_admin):
        body = {"user_id": user.user_id, "role": "admin"}
        api.call("POST", f"/groups/{group_id}/members", owner, json=body)
    members = f"/groups/{group_id}/members"
    assert_error(api.call("DELETE", f"{members}/{other_admin.user_id}", admin), 403)
    assert_error(api.call("DELETE", f"{members}/{owner.user_id}", admin), 403)
    assert api.call("DELETE", f"{members}/{bob.user_id}", admin).status_code == 204
    assert group_of(api, owner, group_id)["member_count"] == 3


def test_members_and_strangers_cannot_remove_others(api: ApiClient) -> None:
    owner, bob, carol, stranger = api.user(), api.user(), api.user(), api.user()
    group_id = api.group(owner, bob, carol)
    path = f"/groups/{group_id}/members/{carol.user_id}"
    assert_error(api.call("DELETE", path, bob), 403)
    assert_error(api.call("DELETE", path, stranger), 403)
    assert_error(api.call("DELETE", path), 401)
    assert group_of(api, owner, group_id)["member_count"] == 3


def test_removing_a_non_member_is_404(api: ApiClient) -> None:
    owner, stranger = api.user(), api.user()
    group_id = api.group(owner)
    assert_error(api.call("DELETE", f"/groups/{group_id}/members/{stranger.user_id}", owner), 404)
    # Leaving a group one is not in is 404 too.
    assert_error(
        api.call("DELETE", f"/groups/{group_id}/members/{stranger.user_id}", stranger), 404
    )


def test_a_member_leaves(api: ApiClient) -> None:
    owner, bob = api.user(), api.user()
    group_id = api.group(owner, bob)
    assert api.call("DELETE", f"/groups/{group_id}/members/{bob.user_id}", bob).status_code == 204
    assert roles(api, owner, group_id) == {owner.user_id: "owner"}


def test_leaving_owner_hands_over_to_the_admin_first(api: ApiClient) -> None:
    owner, bob, admin = api.user(), api.user(), api.user()
    group_id = api.group(owner, bob)  # bob joined before the admin
    api.call(
        "POST",
        f"/groups/{group_id}/members",
        owner,
        json={"user_id": admin.user_id, "role": "admin"},
    )
    api.events(group_id)
    assert (
        api.call("DELETE", f"/groups/{group_id}/members/{owner.user_id}", owner).status_code == 204
    )
    group = group_of(api, admin, group_id)
    assert group["owner_id"] == admin.user_id and group["member_count"] == 2
    assert roles(api, admin, group_id) == {admin.user_id: "owner", bob.user_id: "member"}
    assert summary(api.events(group_id)) == [
        ("member_removed", owner.user_id, "owner"),
        ("role_changed", admin.user_id, "owner"),
    ]


def test_leaving_owner_without_admins_hands_over_to_a_member(api: ApiClient) -> None:
    owner, bob = api.user(), api.user()
    group_id = api.group(owner, bob)
    assert (
        api.call("DELETE", f"/groups/{group_id}/members/{owner.user_id}", owner).status_code == 204
    )
    assert group_of(api, bob, group_id)["owner_id"] == bob.user_id


def test_the_last_member_leaving_deletes_the_group(api: ApiClient) -> None:
    owner = api.user()
    group_id = api.group(owner)
    api.events(group_id)
    assert (
        api.call("DELETE", f"/groups/{group_id}/members/{owner.user_id}", owner).status_code == 204
    )
    assert_error(api.call("GET", f"/groups/{group_id}", owner), 404)
    assert group_service.member_ids(api.services, group_id) is None
    (event,) = api.events(group_id)
    assert event["event"] == "member_removed" and event["member_ids"] == []


# -------------------------------------------------------------------- cache
def test_member_ids_is_cached_and_invalidated_on_every_change(api: ApiClient) -> None:
    owner, bob, carol = api.user(), api.user(), api.user()
    group_id = api.group(owner, bob)
    key = group_service.cache_key(group_id)
    assert set(group_service.member_ids(api.services, group_id) or []) == {
        owner.user_id,
        bob.user_id,
    }
    assert set(json.loads(api.services.cache.get(key) or "[]")) == {owner.user_id, bob.user_id}

    def after(method: str, path: str, body: dict[str, str] | None = None) -> set[str]:
        response = api.call(method, f"/groups/{group_id}/members{path}", owner, json=body)
        assert response.status_code < 300, response.json
        assert api.services.cache.get(key) is None  # invalidated
        return set(group_service.member_ids(api.services, group_id) or [])

    members = {owner.user_id, bob.user_id, carol.user_id}
    assert after("POST", "", {"user_id": carol.user_id}) == members
    assert after("PATCH", f"/{carol.user_id}", {"role": "admin"}) == members
    assert after("DELETE", f"/{bob.user_id}") == members - {bob.user_id}


def test_member_ids_of_an_unknown_group_is_none(api: ApiClient) -> None:
    assert group_service.member_ids(api.services, uuid.uuid4().hex) is None


def test_concurrent_adds_keep_member_count_right(api: ApiClient) -> None:
    owner = api.user()
    newcomers = [api.user() for _ in range(4)]
    group_id = api.group(owner)

    def add(user_id: str) -> int:
        try:
            group_service.add_member(api.services, owner.user_id, group_id, user_id)
        except APIError as err:
            return err.status
        return 201

    with ThreadPoolExecutor(4) as pool:
        assert sorted(pool.map(add, [u.user_id for u in newcomers])) == [201] * 4
        same = [newcomers[0].user_id] * 4
        assert sorted(pool.map(add, same)) == [409] * 4
    assert group_of(api, owner, group_id)["member_count"] == 5
    assert len(roles(api, owner, group_id)) == 5


@pytest.mark.unit
def test_unreachable_cache_refuses_changes_but_not_reads(app: Flask) -> None:
    """With the member-list cache down a change is refused (503) before its
    commit, so no stale list can outlive it; reading falls back to the database."""
    api = ApiClient(app)
    owner, bob = api.user(), api.user()
    group_id = api.group(owner)
    dead = load_settings(environ={}, overrides={"redis_url": "redis://127.0.0.1:1/0"})
    api.services.__dict__["cache"] = RedisCache(dead)  # a real client, nobody listening
    response = api.call("POST", f"/groups/{group_id}/members", owner, json={"user_id": bob.user_id})
    assert_error(response, 503)
    assert group_service.member_ids(api.services, group_id) == [owner.user_id]
    assert group_of(api, owner, group_id)["member_count"] == 1
