"""GET/PATCH /users/me and GET /users/{user_id}."""

from __future__ import annotations

import uuid

import pytest

from .support import ApiClient, assert_error


def test_me_is_the_full_profile(api: ApiClient) -> None:
    user = api.user(email="me@example.com", display_name="Me")
    response = api.call("GET", "/users/me", user)
    assert response.status_code == 200
    assert response.json["user_id"] == user.user_id
    assert response.json["username"] == user.username
    assert response.json["email"] == "me@example.com"
    assert response.json["display_name"] == "Me"
    assert response.json["avatar_url"] is None


def test_me_needs_a_token(api: ApiClient) -> None:
    assert_error(api.call("GET", "/users/me"), 401)
    assert_error(api.call("PATCH", "/users/me", json={"display_name": "x"}), 401)


def test_patch_me_changes_and_clears_fields(api: ApiClient) -> None:
    user = api.user(email="old@example.com")
    changes = {"display_name": "New Name", "avatar_url": "https://cdn.example.com/a.png"}
    response = api.call("PATCH", "/users/me", user, json=changes)
    assert response.status_code == 200
    assert response.json["display_name"] == "New Name"
    assert response.json["email"] == "old@example.com"  # untouched
    cleared = api.call("PATCH", "/users/me", user, json={"email": None})
    assert cleared.status_code == 200 and cleared.json["email"] is None
    again = api.call("GET", "/users/me", user).json
    assert again["avatar_url"] == changes["avatar_url"] and again["email"] is None


def test_patch_me_with_nothing_changes_nothing(api: ApiClient) -> None:
    user = api.user(display_name="Same")
    response = api.call("PATCH", "/users/me", user, json={})
    assert response.status_code == 200 and response.json["display_name"] == "Same"


@pytest.mark.parametrize(
    "changes",
    [
        {"email": "nope"},
        {"email": "a@" + "b" * 250 + ".com"},
        {"avatar_url": "ftp://example.com/a.png"},
        {"avatar_url": "javascript:alert(1)"},
        {"avatar_url": "https://example.com/" + "a" * 500},
        {"display_name": ""},
        {"display_name": "x" * 65},
        {"display_name": 42},
        {"username": "renamed"},
        {"password": "new password!"},
    ],
)
def test_patch_me_rejects_invalid_changes(api: ApiClient, changes: dict[str, object]) -> None:
    user = api.user()
    assert_error(api.call("PATCH", "/users/me", user, json=changes), 400)
    assert api.call("GET", "/users/me", user).json["username"] == user.username


def test_public_profile_hides_the_email(api: ApiClient) -> None:
    viewer, other = api.user(), api.user(email="secret@example.com", display_name="Other")
    response = api.call("GET", f"/users/{other.user_id}", viewer)
    assert response.status_code == 200
    assert response.json["user_id"] == other.user_id
    assert response.json["username"] == other.username
    assert response.json["display_name"] == "Other"
    assert "email" not in response.json


def test_unknown_user_is_404(api: ApiClient) -> None:
    viewer = api.user()
    assert_error(api.call("GET", f"/users/{uuid.uuid4().hex}", viewer), 404)


def test_public_profile_needs_a_token(api: ApiClient) -> None:
    other = api.user()
    assert_error(api.call("GET", f"/users/{other.user_id}"), 401)
