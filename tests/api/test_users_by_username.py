"""GET /api/v1/users/by-username/{username}: how the web client starts a chat by name."""

from __future__ import annotations

import pytest
from flask import Flask

from imchat.api.openapi import openapi_path

from .support import PASSWORD, ApiClient, assert_error


def test_lookup_returns_the_public_profile(api: ApiClient) -> None:
    alice = api.user("alice")
    bob_profile = api.register("bob", display_name="Bob B", email="bob@example.com")
    response = api.call("GET", f"/users/by-username/{bob_profile['username']}", alice)
    assert response.status_code == 200, response.json
    assert response.json == {
        "user_id": bob_profile["user_id"],
        "username": bob_profile["username"],
        "display_name": "Bob B",
        "avatar_url": None,
    }
    # The same profile as by id: the client caches either under the user id.
    by_id = api.call("GET", f"/users/{bob_profile['user_id']}", alice)
    assert by_id.json == response.json


def test_lookup_of_oneself_works(api: ApiClient) -> None:
    alice = api.user("alice")
    response = api.call("GET", f"/users/by-username/{alice.username}", alice)
    assert response.status_code == 200
    assert response.json["user_id"] == alice.user_id  # type: ignore[index]


@pytest.mark.parametrize(
    "name", ["nobody_{suffix}", "NOBODY{suffix}", "%20{suffix}", "\u00e9{suffix}"]
)
def test_unknown_username_is_a_404_json_error(api: ApiClient, name: str) -> None:
    alice = api.user("alice")
    response = api.call("GET", f"/users/by-username/{name.format(suffix=alice.user_id[:8])}", alice)
    error = assert_error(response, 404)
    assert error["code"] == "not_found"


def test_lookup_is_exact_not_a_prefix_or_case_fold(api: ApiClient) -> None:
    alice, bob = api.user("alice"), api.user("bob")
    for near in (bob.username[:-1], bob.username.upper(), bob.username + "_"):
        assert_error(api.call("GET", f"/users/by-username/{near}", alice), 404)


@pytest.mark.parametrize("header", [None, "Bearer nonsense", "Basic abc"])
def test_lookup_needs_a_valid_token(api: ApiClient, header: str | None) -> None:
    bob = api.user("bob")
    headers = {"Authorization": header} if header else {}
    response = api.call("GET", f"/users/by-username/{bob.username}", headers=headers)
    assert assert_error(response, 401)["code"] == "unauthorized"
    assert "user_id" not in response.get_data(as_text=True)


def test_only_get_is_allowed(api: ApiClient) -> None:
    alice = api.user("alice")
    response = api.call("POST", f"/users/by-username/{alice.username}", alice, json={})
    assert_error(response, 405)


@pytest.mark.unit
def test_openapi_documents_the_lookup(app: Flask) -> None:
    spec = ApiClient(app).call("GET", "/openapi.json").json
    path = openapi_path("/api/v1/users/by-username/<username>")
    operation = spec["paths"][path]["get"]  # type: ignore[index]
    assert operation["security"] == [{"bearerAuth": []}]
    assert {"200", "401", "404"} <= set(operation["responses"])
    assert operation["parameters"][0]["name"] == "username"


def test_login_is_exact_about_case_on_every_database(api: ApiClient) -> None:
    # MariaDB's collation would match BOB to bob; imchat must not.
    bob = api.register("bob")
    body = {"username": bob["username"].upper(), "password": PASSWORD}
    response = api.call("POST", "/auth/login", json=body)
    assert response.status_code == 401, response.json
