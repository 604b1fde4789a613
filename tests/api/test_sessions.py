"""Sessions over the HTTP API: refresh tokens that rotate (a reused one ends
the session), logout, a password change that ends every other session, and
one-use WebSocket tickets. Run on the embedded default and on MariaDB + Redis."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import jwt
import pytest

from imchat.errors import APIError
from imchat.services import sessions as session_service
from imchat.services.auth import Identity

from .support import PASSWORD, ApiClient, User, assert_error


def login(api: ApiClient, username: str, password: str = PASSWORD) -> dict[str, Any]:
    response = api.call("POST", "/auth/login", json={"username": username, "password": password})
    assert response.status_code == 200, response.json
    body: dict[str, Any] = response.json  # type: ignore[assignment]
    return body


def as_user(body: dict[str, Any], username: str = "") -> User:
    return User(body["user_id"], username, body["access_token"])


def refresh(api: ApiClient, refresh_token: str) -> Any:
    return api.call("POST", "/auth/refresh", json={"refresh_token": refresh_token})


def me(api: ApiClient, body: dict[str, Any]) -> int:
    return api.call("GET", "/users/me", as_user(body)).status_code


def test_login_opens_a_session_with_short_access_tokens(api: ApiClient) -> None:
    username = api.register()["username"]
    body = login(api, username)
    assert body["expires_in"] == api.services.settings.token_ttl_seconds == 900
    assert body["refresh_token"] and body["refresh_token"] != body["access_token"]
    claims = jwt.decode(body["access_token"], api.services.secret_key, algorithms=["HS256"])
    assert claims["sid"] == body["refresh_token"].split(".")[0]
    assert me(api, body) == 200


def test_a_refresh_token_works_once_and_a_reuse_ends_the_session(api: ApiClient) -> None:
    username = api.register()["username"]
    first = login(api, username)
    answer = refresh(api, first["refresh_token"])
    assert answer.status_code == 200, answer.json
    second = answer.json
    assert second["refresh_token"] != first["refresh_token"]
    assert second["user_id"] == first["user_id"]
    assert me(api, second) == 200 and me(api, first) == 200  # same session, both unexpired
    # The first refresh token again: someone copied it. The session ends for both.
    assert_error(refresh(api, first["refresh_token"]), 401)
    assert me(api, second) == 401
    assert_error(refresh(api, second["refresh_token"]), 401)


def test_two_refreshes_racing_with_one_token_leave_one_winner(api: ApiClient) -> None:
    username = api.register()["username"]
    token = login(api, username)["refresh_token"]
    with ThreadPoolExecutor(4) as pool:
        statuses = sorted(pool.map(lambda _: refresh(api, token).status_code, range(4)))
    # The compare-and-set lets exactly one rotate; each of the others is a
    # reuse (after the rotation), which ends the session.
    assert statuses == [200, 401, 401, 401]


def test_bad_refresh_tokens_are_401_and_bad_bodies_400(api: ApiClient) -> None:
    for token in ["x", "no-dot", "a" * 32 + ".forged", ".", "0" * 32 + "."]:
        assert_error(refresh(api, token), 401)
    for body in [{}, {"refresh_token": ""}, {"refresh_token": 5}, {"other": "x"}, ["x"]]:
        assert_error(api.call("POST", "/auth/refresh", json=body), 400)
    assert_error(refresh(api, "a" * 300), 400)


def test_logout_ends_only_the_callers_session(api: ApiClient) -> None:
    username = api.register()["username"]
    laptop, phone = login(api, username), login(api, username)
    assert api.call("POST", "/auth/logout", as_user(laptop)).status_code == 204
    assert me(api, laptop) == 401
    assert_error(refresh(api, laptop["refresh_token"]), 401)
    assert me(api, phone) == 200
    assert_error(api.call("POST", "/auth/logout"), 401)


def test_a_password_change_ends_every_other_session(api: ApiClient) -> None:
    username = api.register()["username"]
    here, elsewhere = login(api, username), login(api, username)
    change = {"old_password": PASSWORD, "new_password": "a brand new secret"}
    answer = api.call("POST", "/users/me/password", as_user(here), json=change)
    assert answer.status_code == 204, answer.json
    assert me(api, here) == 200
    assert me(api, elsewhere) == 401
    assert_error(refresh(api, elsewhere["refresh_token"]), 401)
    assert refresh(api, here["refresh_token"]).status_code == 200
    assert_error(
        api.call("POST", "/auth/login", json={"username": username, "password": PASSWORD}), 401
    )
    login(api, username, "a brand new secret")


def test_a_password_change_checks_the_old_password_and_the_new_one(api: ApiClient) -> None:
    username = api.register()["username"]
    body = login(api, username)
    wrong = {"old_password": "not it at all", "new_password": "a brand new secret"}
    assert_error(api.call("POST", "/users/me/password", as_user(body), json=wrong), 403)
    short = {"old_password": PASSWORD, "new_password": "short"}
    assert_error(api.call("POST", "/users/me/password", as_user(body), json=short), 400)
    assert_error(api.call("POST", "/users/me/password", json=wrong), 401)
    assert me(api, body) == 200  # nothing ended


def test_a_ws_ticket_is_redeemed_once(api: ApiClient) -> None:
    username = api.register()["username"]
    body = login(api, username)
    answer = api.call("POST", "/auth/ws-ticket", as_user(body))
    assert answer.status_code == 200, answer.json
    ticket = answer.json["ticket"]
    assert answer.json["expires_in"] == 30
    sid = body["refresh_token"].split(".")[0]
    identity = session_service.redeem_ticket(api.services, ticket)
    assert identity == Identity(body["user_id"], sid)
    for again in (ticket, "made-up"):
        with pytest.raises(APIError) as refused:
            session_service.redeem_ticket(api.services, again)
        assert refused.value.status == 401
    assert_error(api.call("POST", "/auth/ws-ticket"), 401)


def test_the_ticket_of_an_ended_session_is_refused(api: ApiClient) -> None:
    username = api.register()["username"]
    body = login(api, username)
    ticket = api.call("POST", "/auth/ws-ticket", as_user(body)).json["ticket"]
    api.call("POST", "/auth/logout", as_user(body))
    with pytest.raises(APIError) as refused:
        session_service.redeem_ticket(api.services, ticket)
    assert refused.value.status == 401
