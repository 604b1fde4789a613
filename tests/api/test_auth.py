"""POST /auth/register and /auth/login, passwords and tokens."""

from __future__ import annotations

import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import jwt
import pytest
from flask import Flask
from sqlalchemy import delete, select

from imchat.errors import APIError
from imchat.factory import create_app, services_of
from imchat.ops import migrate
from imchat.services import auth as auth_service
from imchat.services import users as user_service
from imchat.stores import users as user_store
from imchat.stores.models import User as UserRow

from .support import PASSWORD, SECRET, ApiClient, assert_error


def fresh_name() -> str:
    return f"n_{uuid.uuid4().hex[:12]}"


# ------------------------------------------------------------------ register
def test_register_returns_the_profile_without_the_password(api: ApiClient) -> None:
    name = fresh_name()
    body = {"username": name, "password": PASSWORD, "email": "a@example.com", "display_name": "A"}
    response = api.call("POST", "/auth/register", json=body)
    assert response.status_code == 201
    profile = response.json
    assert profile["username"] == name and profile["email"] == "a@example.com"
    assert profile["display_name"] == "A" and isinstance(profile["user_id"], str)
    assert "password" not in response.get_data(as_text=True)


def test_password_is_stored_as_a_salted_argon2id_hash(api: ApiClient) -> None:
    first, second = api.register("s"), api.register("s")
    with api.services.db.session() as session:
        hashes = [user_store.by_id(session, u["user_id"]).password_hash for u in (first, second)]  # type: ignore[union-attr]
    assert all(h.startswith("$argon2id$") and PASSWORD not in h for h in hashes)
    assert hashes[0] != hashes[1]  # same password, different salts


@pytest.mark.unit
def test_production_hashes_use_argon2_default_cost(
    app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.undo()  # drop the cheap test parameters of the autouse fixture
    settings = services_of(app).settings
    stored = auth_service.hash_password(settings, PASSWORD)
    assert "$m=65536,t=3,p=4$" in stored
    assert auth_service.check_password(settings, stored, PASSWORD)
    assert not auth_service.check_password(settings, stored, PASSWORD + "x")


@pytest.mark.parametrize(
    "body",
    [
        {"password": PASSWORD},
        {"username": "ok_name"},
        {"username": "ab", "password": PASSWORD},
        {"username": "a" * 33, "password": PASSWORD},
        {"username": "Upper", "password": PASSWORD},
        {"username": "trailing\n", "password": PASSWORD},
        {"username": "has-dash", "password": PASSWORD},
        {"username": "ok_name", "password": "short"},
        {"username": "ok_name", "password": "p" * 129},
        {"username": "ok_name", "password": PASSWORD, "email": "not-an-email"},
        {"username": "ok_name", "password": PASSWORD, "display_name": "x" * 65},
        {"username": "ok_name", "password": PASSWORD, "display_name": "\ud800"},
        {"username": "ok_name", "password": PASSWORD, "admin": True},
        {"username": 5, "password": PASSWORD},
    ],
)
def test_register_rejects_invalid_bodies(api: ApiClient, body: dict[str, object]) -> None:
    error = assert_error(api.call("POST", "/auth/register", json=body), 400)
    assert error["code"] == "bad_request" and error["details"]


@pytest.mark.unit
@pytest.mark.parametrize("raw", [b"", b"{", b"[1, 2]", b'"text"', b"null", b"[" * 50_000])
def test_register_rejects_what_is_not_a_json_object(app: Flask, raw: bytes) -> None:
    response = ApiClient(app).call(
        "POST", "/auth/register", data=raw, content_type="application/json"
    )
    assert_error(response, 400)


def test_register_taken_username_is_409(api: ApiClient) -> None:
    taken = api.register()["username"]
    response = api.call("POST", "/auth/register", json={"username": taken, "password": PASSWORD})
    assert_error(response, 409)


def test_register_race_past_the_precheck_is_409(
    api: ApiClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two registrations both pass the pre-check: the unique index decides."""
    taken = api.register()["username"]
    monkeypatch.setattr(user_store, "username_taken", lambda session, username: False)
    with pytest.raises(APIError) as caught:
        user_service.register(api.services, taken, PASSWORD)
    assert caught.value.status == 409


def test_concurrent_registrations_of_one_name_create_one_user(api: ApiClient) -> None:
    name = fresh_name()

    def attempt(_: int) -> int:
        try:
            user_service.register(api.services, name, PASSWORD)
        except APIError as err:
            return err.status
        return 201

    with ThreadPoolExecutor(4) as pool:
        statuses = sorted(pool.map(attempt, range(4)))
    assert statuses == [201, 409, 409, 409]


# --------------------------------------------------------------------- login
def test_login_returns_a_bearer_token_for_the_user(api: ApiClient) -> None:
    profile = api.register()
    response = api.call(
        "POST", "/auth/login", json={"username": profile["username"], "password": PASSWORD}
    )
    assert response.status_code == 200
    body = response.json
    assert body["token_type"] == "Bearer" and body["user_id"] == profile["user_id"]
    assert body["expires_in"] == api.services.settings.token_ttl_seconds
    me = api.call("GET", "/users/me", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert me.status_code == 200 and me.json["user_id"] == profile["user_id"]


def test_token_claims_are_sub_iat_exp(api: ApiClient) -> None:
    user = api.user()
    claims = jwt.decode(user.token, api.services.secret_key, algorithms=["HS256"])
    assert claims["sub"] == user.user_id
    assert claims["exp"] - claims["iat"] == api.services.settings.token_ttl_seconds


@pytest.mark.parametrize("password", [PASSWORD + "!", "wrong password"])
def test_login_with_a_wrong_password_is_401(api: ApiClient, password: str) -> None:
    username = api.register()["username"]
    response = api.call("POST", "/auth/login", json={"username": username, "password": password})
    assert_error(response, 401)


def test_login_of_an_unknown_user_is_401(api: ApiClient) -> None:
    response = api.call(
        "POST", "/auth/login", json={"username": fresh_name(), "password": PASSWORD}
    )
    assert_error(response, 401)


@pytest.mark.parametrize(
    "body", [{}, {"username": "x"}, {"username": "x", "password": ""}, {"u": 1}, [], "x"]
)
def test_login_rejects_invalid_bodies(api: ApiClient, body: object) -> None:
    assert_error(api.call("POST", "/auth/login", json=body), 400)


# -------------------------------------------------------------------- tokens
@pytest.mark.parametrize(
    "header",
    ["", "Bearer", "Bearer ", "Basic dXNlcjpwYXNz", "Bearer not.a.jwt", "Bearer abc"],
)
def test_bad_or_missing_credentials_are_401(api: ApiClient, header: str) -> None:
    response = api.call("GET", "/users/me", headers={"Authorization": header} if header else {})
    assert_error(response, 401)
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_expired_and_forged_tokens_are_401(api: ApiClient) -> None:
    user = api.user()
    past = int(time.time()) - 100
    expired = jwt.encode(
        {"sub": user.user_id, "iat": past - 10, "exp": past}, api.services.secret_key, "HS256"
    )
    forged = jwt.encode(
        {"sub": user.user_id, "iat": past, "exp": past + 10_000}, "another-" + SECRET, "HS256"
    )
    for token in (expired, forged):
        response = api.call("GET", "/users/me", headers={"Authorization": f"Bearer {token}"})
        assert_error(response, 401)


def test_token_of_a_deleted_user_is_refused(api: ApiClient) -> None:
    user = api.user()
    assert auth_service.verify_token(api.services, user.token) == user.user_id
    with api.services.db.session() as session:
        session.execute(delete(UserRow).where(UserRow.user_id == user.user_id))
    with pytest.raises(APIError) as caught:
        auth_service.verify_token(api.services, user.token)
    assert caught.value.status == 401
    assert_error(api.call("GET", "/users/me", user), 401)


@pytest.mark.unit
def test_embedded_secret_survives_a_restart(data_dir: Path) -> None:
    first = create_app(overrides={"data_dir": str(data_dir)}, environ={})
    migrate.upgrade(services_of(first).settings)
    user = ApiClient(first).user()
    services_of(first).close()
    second = create_app(overrides={"data_dir": str(data_dir)}, environ={})
    try:
        assert ApiClient(second).call("GET", "/users/me", user).status_code == 200
        with services_of(second).db.session() as session:
            assert session.scalar(select(UserRow.username)) == user.username
    finally:
        services_of(second).close()


AUTHENTICATED_ROUTES = [
    ("GET", "/users/me"),
    ("PATCH", "/users/me"),
    ("GET", "/users/{user}"),
    ("POST", "/groups"),
    ("GET", "/groups/{group}"),
    ("GET", "/groups/{group}/members"),
    ("POST", "/groups/{group}/members"),
    ("PATCH", "/groups/{group}/members/{user}"),
    ("DELETE", "/groups/{group}/members/{user}"),
]


@pytest.mark.parametrize(("method", "template"), AUTHENTICATED_ROUTES)
def test_every_authenticated_route_needs_a_valid_token(
    api: ApiClient, method: str, template: str
) -> None:
    owner, member = api.user(), api.user()
    path = template.format(group=api.group(owner, member), user=member.user_id)
    body = {"role": "admin", "user_id": member.user_id, "name": "x", "display_name": "x"}
    assert_error(api.call(method, path, json=body), 401)
    bad = {"Authorization": "Bearer " + owner.token[:-4] + "AAAA"}
    assert_error(api.call(method, path, json=body, headers=bad), 401)
