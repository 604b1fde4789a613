"""Every error is the contract's JSON body: unknown routes, methods, sizes, bad JSON."""

from __future__ import annotations

import pytest
from flask import Flask

from .support import PASSWORD, ApiClient, assert_error

pytestmark = pytest.mark.unit


def test_unknown_route_is_json_404(app: Flask) -> None:
    client = ApiClient(app)
    assert_error(client.call("GET", "/nowhere"), 404)
    assert_error(client.call("POST", "/groups/"), 404)
    assert_error(client.client.get("/not-api"), 404)


def test_wrong_method_is_json_405_with_allow(app: Flask) -> None:
    client = ApiClient(app)
    response = client.call("DELETE", "/users/me")
    error = assert_error(response, 405)
    assert error["code"] == "method_not_allowed"
    assert "PATCH" in response.headers["Allow"]
    assert_error(client.call("GET", "/auth/login"), 405)
    assert_error(client.call("PUT", "/groups/abc/members/def"), 405)


def test_body_over_64_kib_is_json_413(app: Flask) -> None:
    client = ApiClient(app)
    body = '{"username": "big_one", "password": "' + "p" * (64 * 1024) + '"}'
    response = client.call("POST", "/auth/register", data=body, content_type="application/json")
    assert_error(response, 413)


def test_json_without_content_type_is_accepted(app: Flask) -> None:
    response = ApiClient(app).call(
        "POST", "/auth/register", data=f'{{"username": "no_ctype", "password": "{PASSWORD}"}}'
    )
    assert response.status_code == 201


def test_malformed_json_is_json_400(app: Flask) -> None:
    client = ApiClient(app)
    user = client.user()
    for method, path in [("POST", "/groups"), ("PATCH", "/users/me"), ("POST", "/auth/login")]:
        response = client.call(method, path, user, data=b"{'single': 'quotes'}")
        assert_error(response, 400)
    invalid_utf8 = client.call("POST", "/auth/login", data=b'{"username": "\xff"}')
    assert_error(invalid_utf8, 400)


def test_empty_path_segment_is_json_404_not_a_redirect(app: Flask) -> None:
    client = ApiClient(app)
    user = client.user()
    assert_error(client.call("GET", "/groups//members", user), 404)
    assert_error(client.call("GET", "/users//", user), 404)
