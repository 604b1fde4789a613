"""/api/v1/openapi.json: a valid OpenAPI 3 document listing every API route."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask
from openapi_schema_validator import OAS30Validator
from openapi_spec_validator import validate

from imchat.api.openapi import openapi_path

from .history_support import Chat, direct_id
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


def test_the_history_routes_and_their_query_parameters_are_documented(app: Flask) -> None:
    paths = document(app)["paths"]
    listing = paths["/api/v1/conversations"]["get"]
    one = paths["/api/v1/conversations/{conversation_id}"]["get"]
    history = paths["/api/v1/conversations/{conversation_id}/messages"]["get"]
    mine = paths["/api/v1/groups"]["get"]
    query = {p["name"]: p for p in listing["parameters"] if p["in"] == "query"}
    assert set(query) == {"limit", "before"}
    limit = query["limit"]["schema"]
    assert (limit["minimum"], limit["maximum"], limit["default"]) == (1, 100, 50)
    query = {p["name"]: p for p in history["parameters"] if p["in"] == "query"}
    assert set(query) == {"before_seq", "after_seq", "limit"}
    assert query["before_seq"]["schema"]["minimum"] == 1
    assert query["after_seq"]["schema"]["minimum"] == 0
    assert {p["name"] for p in history["parameters"] if p["in"] == "path"} == {"conversation_id"}
    assert {"200", "400", "401"} <= set(listing["responses"])
    assert {"200", "401", "403", "404"} <= set(one["responses"])
    assert {"200", "400", "401", "403", "404"} <= set(history["responses"])
    assert {"200", "401"} <= set(mine["responses"])
    for operation in (listing, one, history, mine):
        assert operation["security"] == [{"bearerAuth": []}]


def resolved(node: Any, components: dict[str, Any]) -> Any:
    """``node`` with every ``#/components/schemas/...`` reference replaced by its schema."""
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str):
            return resolved(components[ref.rsplit("/", 1)[-1]], components)
        return {k: resolved(v, components) for k, v in node.items()}
    if isinstance(node, list):
        return [resolved(v, components) for v in node]
    return node


def success_schema(spec: dict[str, Any], path: str, method: str = "get") -> dict[str, Any]:
    content = spec["paths"][path][method]["responses"]["200"]["content"]
    schema: dict[str, Any] = resolved(
        content["application/json"]["schema"], spec["components"]["schemas"]
    )
    return schema


def test_the_history_answers_match_the_document(app: Flask) -> None:
    """Real answers of the new routes validate against their documented schemas,
    and those schemas require the fields of C, M and the caller's groups."""
    spec = document(app)
    api = ApiClient(app)
    alice, bob = api.user("alice"), api.user("bob")
    group = api.group(alice, bob, name="documented")
    chat = Chat(api)
    chat.send(alice, "hi", to=bob)
    chat.send(bob, "re", to=alice, reply_to=1)
    chat.send(bob, "all", group=group)
    direct = direct_id(alice, bob)
    answers = {
        "/api/v1/conversations": "/conversations?limit=1",
        "/api/v1/conversations/{conversation_id}": f"/conversations/{direct}",
        "/api/v1/conversations/{conversation_id}/messages": f"/conversations/{direct}/messages",
        "/api/v1/groups": "/groups",
    }
    for documented, path in answers.items():
        response = api.call("GET", path, alice)
        assert response.status_code == 200, response.json
        OAS30Validator(success_schema(spec, documented)).validate(response.json)

    conversation = spec["components"]["schemas"]["Conversation"]
    assert {
        "conversation_id",
        "kind",
        "last_seq",
        "last_message",
        "delivered_seq",
        "read_seq",
        "unread",
    } <= set(conversation["required"])
    assert {"peer_id", "group_id", "name"} <= set(conversation["properties"])
    message = spec["components"]["schemas"]["Message"]
    assert {
        "msg_id",
        "conversation_id",
        "seq",
        "from",
        "body",
        "ts",
        "reply_to",
        "edited_at",
        "deleted",
        "reactions",
    } <= set(message["required"])
    assert {"to", "group"} <= set(message["properties"])
    assert "role" in spec["components"]["schemas"]["MyGroup"]["required"]


def test_the_push_routes_are_documented_with_their_bodies(app: Flask) -> None:
    paths = document(app)["paths"]
    subscriptions = paths["/api/v1/users/me/push-subscriptions"]
    post, delete = subscriptions["post"], subscriptions["delete"]
    assert post["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/PushSubscription"
    }
    assert {"201", "400", "401"} <= set(post["responses"])
    assert {"204", "400", "401"} <= set(delete["responses"])
    key = paths["/api/v1/push/vapid-public-key"]["get"]
    assert {"200", "401", "503"} <= set(key["responses"])
    switch = paths["/api/v1/conversations/{conversation_id}/push"]
    assert {"200", "401", "403", "404"} <= set(switch["get"]["responses"])
    assert {"200", "400", "401", "403", "404"} <= set(switch["put"]["responses"])
    for operation in (post, delete, key, switch["get"], switch["put"]):
        assert operation["security"] == [{"bearerAuth": []}]
    schemas = document(app)["components"]["schemas"]
    assert set(schemas["PushSubscription"]["required"]) == {"endpoint", "keys"}
    assert set(schemas["PushKeys"]["required"]) == {"p256dh", "auth"}
