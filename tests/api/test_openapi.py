"""/api/v1/openapi.json: a valid OpenAPI 3 document listing every API route."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask
from openapi_spec_validator import validate

from imchat.api.openapi import openapi_path

from .support import ApiClient

pytestmark = pytest.mark.unit


def document(app: Flask) -> dict[str, Any]:
    response = ApiClient(app).call("GET", "/openapi.json")
    assert response.status_code == 200 and response.mimetype == "application/json"
    body: dict[str, Any] = response.json  # type: ignore[assignment]
    return body


def test_document_is_valid_openapi_3(app: Flask) -> None:
    spec = document(app)
    validate(spec)  # raises on any structural error
    assert spec["openapi"].startswith("3.")
    assert {"Error", "Register", "Token", "Profile", "Group", "Member"} <= set(
        spec["components"]["schemas"]
    )
    assert spec["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"


def test_document_lists_every_api_route_and_method(app: Flask) -> None:
    paths = document(app)["paths"]
    routes = {
        (openapi_path(rule.rule), method.lower())
        for rule in app.url_map.iter_rules()
        if rule.rule.startswith("/api/v1/")
        for method in (rule.methods or set()) - {"HEAD", "OPTIONS"}
    }
    assert len(routes) >= 10
    documented = {(path, method) for path, ops in paths.items() for method in ops}
    assert documented == routes


def test_operations_name_their_bodies_errors_and_security(app: Flask) -> None:
    paths = document(app)["paths"]
    register = paths["/api/v1/auth/register"]["post"]
    assert register["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Register"
    }
    assert {"201", "400", "409", "429"} <= set(register["responses"])
    assert "Retry-After" in register["responses"]["429"]["headers"]
    assert "security" not in register
    patch_role = paths["/api/v1/groups/{group_id}/members/{user_id}"]["patch"]
    assert patch_role["security"] == [{"bearerAuth": []}]
    assert {p["name"] for p in patch_role["parameters"]} == {"group_id", "user_id"}
    assert {"200", "400", "401", "403", "404", "409"} <= set(patch_role["responses"])
    members = paths["/api/v1/groups/{group_id}/members"]["get"]["responses"]["200"]
    assert members["content"]["application/json"]["schema"]["type"] == "array"
