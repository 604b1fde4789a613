"""The OpenAPI 3 document, generated from the routes and the marshmallow schemas.

Each view declares its operation with :func:`operation`; :func:`build_spec`
walks ``app.url_map`` and documents every ``/api/v1`` route that declares one.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from flask import Blueprint, Flask, Response, current_app, jsonify
from marshmallow import Schema

from imchat.api import schemas

API_PREFIX = "/api/v1"
F = TypeVar("F", bound=Callable[..., Any])

ERROR_TEXT = {
    400: "malformed JSON or failed validation",
    401: "missing or bad credentials",
    403: "not allowed",
    404: "unknown",
    409: "conflict",
    413: "body over 64 KiB",
    429: "rate limited; see Retry-After",
    503: "a backend is down",
}

bp = Blueprint("openapi", __name__, url_prefix=API_PREFIX)


@dataclass(frozen=True)
class Operation:
    """What the document says about one view."""

    summary: str
    status: int
    response: Schema | type[Schema] | None = None
    body: type[Schema] | None = None
    errors: tuple[int, ...] = ()
    tags: tuple[str, ...] = field(default_factory=tuple)
    query: type[Schema] | None = None


def operation(
    summary: str,
    status: int = 200,
    response: Schema | type[Schema] | None = None,
    body: type[Schema] | None = None,
    errors: Iterable[int] = (),
    tag: str = "",
    query: type[Schema] | None = None,
) -> Callable[[F], F]:
    """Attach the view's OpenAPI description (read by :func:`build_spec`)."""

    def attach(view: F) -> F:
        view.__dict__["openapi"] = Operation(
            summary, status, response, body, tuple(errors), (tag,) if tag else (), query
        )
        return view

    return attach


def openapi_path(rule: str) -> str:
    """``/groups/<group_id>`` -> ``/groups/{group_id}`` (converters dropped)."""
    return re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule)


def _json(schema: Any) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _error(status: int) -> dict[str, Any]:
    answer: dict[str, Any] = {"description": ERROR_TEXT[status], "content": _json("Error")}
    if status == 429:
        answer["headers"] = {
            "Retry-After": {"description": "seconds to wait", "schema": {"type": "integer"}}
        }
    return answer


def _operation_dict(op: Operation, path_params: Iterable[str], secured: bool) -> dict[str, Any]:
    success: dict[str, Any] = {"description": op.summary}
    if op.response is not None:
        success["content"] = _json(op.response)
    errors = set(op.errors) | ({401} if secured else set())
    result: dict[str, Any] = {
        "summary": op.summary,
        "responses": {str(op.status): success} | {str(s): _error(s) for s in sorted(errors)},
        "tags": list(op.tags),
    }
    params: list[dict[str, Any]] = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in sorted(path_params)
    ]
    if op.query is not None:  # the marshmallow plugin turns it into one parameter per field
        params.append({"in": "query", "schema": op.query})
    if params:
        result["parameters"] = params
    if op.body is not None:
        result["requestBody"] = {"required": True, "content": _json(op.body)}
    if secured:
        result["security"] = [{"bearerAuth": []}]
    return result


def build_spec(app: Flask) -> dict[str, Any]:
    """The OpenAPI 3.0 document of every documented ``/api/v1`` route of ``app``."""
    spec = APISpec(
        title="imchat",
        version="1",
        openapi_version="3.0.3",
        plugins=[MarshmallowPlugin()],
        info={"description": "Accounts, groups and conversations of imchat (see docs/api.md)."},
    )
    spec.components.security_scheme("bearerAuth", {"type": "http", "scheme": "bearer"})
    spec.components.schema("Error", schema=schemas.ErrorSchema)
    paths: dict[str, dict[str, Any]] = {}
    for rule in app.url_map.iter_rules():
        view = app.view_functions[rule.endpoint]
        op = view.__dict__.get("openapi")
        if not rule.rule.startswith(API_PREFIX + "/") or op is None:
            continue
        secured = bool(view.__dict__.get("requires_auth"))
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            ops = paths.setdefault(openapi_path(rule.rule), {})
            ops[method.lower()] = _operation_dict(op, rule.arguments, secured)
    for path in sorted(paths):
        spec.path(path=path, operations=paths[path])
    return spec.to_dict()


@bp.get("/openapi.json")
@operation("this OpenAPI document", tag="meta")
def openapi_json() -> Response:
    # Built per request: cheap, and always matches the routes actually registered.
    return jsonify(build_spec(current_app))
