"""GET /api/v1/groups: every group of the caller, with the caller's role.

On the embedded default (unit) and on MariaDB + Redis (integration).
"""

from __future__ import annotations

from typing import Any

from .support import ApiClient, User, assert_error


def my_groups(api: ApiClient, user: User) -> dict[str, dict[str, Any]]:
    response = api.call("GET", "/groups", user)
    assert response.status_code == 200, response.json
    body: dict[str, Any] = response.json  # type: ignore[assignment]
    assert set(body) == {"groups"}
    found = {g["group_id"]: g for g in body["groups"]}
    assert len(found) == len(body["groups"]), "a group listed twice"
    return found


def test_every_group_of_the_caller_with_its_role(api: ApiClient) -> None:
    alice, bob, carol = api.user("alice"), api.user("bob"), api.user("carol")
    team = api.group(alice, bob, name="team")
    pair = api.group(bob, alice, name="pair")
    elsewhere = api.group(carol, name="elsewhere")
    promoted = api.call(
        "PATCH", f"/groups/{team}/members/{bob.user_id}", alice, json={"role": "admin"}
    )
    assert promoted.status_code == 200, promoted.json

    mine = my_groups(api, alice)
    assert [g["name"] for g in mine.values()] == ["pair", "team"]  # by name
    assert {g: mine[g]["role"] for g in mine} == {team: "owner", pair: "member"}
    assert (mine[team]["name"], mine[team]["owner_id"], mine[team]["member_count"]) == (
        "team",
        alice.user_id,
        2,
    )
    assert {g: r["role"] for g, r in my_groups(api, bob).items()} == {team: "admin", pair: "owner"}
    assert {g: r["role"] for g, r in my_groups(api, carol).items()} == {elsewhere: "owner"}


def test_a_group_one_was_added_to_is_listed_at_once(api: ApiClient) -> None:
    """A user added while away finds the group without anyone having written in it."""
    alice, bob = api.user("alice"), api.user("bob")
    group = api.group(alice, name="later")
    assert my_groups(api, bob) == {}
    added = api.call("POST", f"/groups/{group}/members", alice, json={"user_id": bob.user_id})
    assert added.status_code == 201, added.json
    assert my_groups(api, bob)[group]["role"] == "member"


def test_a_group_left_is_no_longer_listed(api: ApiClient) -> None:
    alice, bob = api.user("alice"), api.user("bob")
    group = api.group(alice, bob)
    assert set(my_groups(api, bob)) == {group}
    left = api.call("DELETE", f"/groups/{group}/members/{bob.user_id}", bob)
    assert left.status_code == 204
    assert my_groups(api, bob) == {}
    assert my_groups(api, alice)[group]["member_count"] == 1


def test_a_user_without_groups_gets_an_empty_list(api: ApiClient) -> None:
    loner = api.user("loner")
    response = api.call("GET", "/groups", loner)
    assert response.status_code == 200 and response.json == {"groups": []}


def test_without_a_token_it_is_401(api: ApiClient) -> None:
    response = api.call("GET", "/groups")
    assert_error(response, 401)
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert_error(api.call("GET", "/groups", headers={"Authorization": "Bearer nonsense"}), 401)
