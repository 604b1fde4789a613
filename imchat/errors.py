"""The contract's error body, for every HTTP error: never an HTML page."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import Flask, Response, jsonify
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.exceptions import HTTPException

from imchat import metrics
from imchat.backends.base import BackendUnavailable

# HTTP status -> the contract's error code.
CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "too_large",
    415: "bad_request",
    429: "rate_limited",
    503: "unavailable",
}


class APIError(Exception):
    """Raised by handlers and services; rendered as the contract's JSON error."""

    def __init__(
        self,
        status: int,
        message: str,
        code: str | None = None,
        details: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code or CODES.get(status, "error")
        self.message = message
        self.details = details
        # e.g. Retry-After on 429, WWW-Authenticate on 401.
        self.headers = dict(headers or {})


def error_response(status: int, code: str, message: str, details: Any = None) -> Response:
    metrics.ERRORS.labels(code, "http").inc()
    body: dict[str, Any] = {"code": code, "message": message}
    if details is not None:
        body["details"] = details
    response = jsonify({"error": body})
    response.status_code = status
    return response


def init_app(app: Flask) -> None:
    @app.errorhandler(APIError)
    def _api_error(err: APIError) -> Response:
        response = error_response(err.status, err.code, err.message, err.details)
        response.headers.update(err.headers)
        return response

    @app.errorhandler(HTTPException)
    def _http_error(err: HTTPException) -> Response:
        status = err.code or 500
        response = error_response(status, CODES.get(status, "error"), err.description or err.name)
        if status == 405 and err.get_response().headers.get("Allow"):
            response.headers["Allow"] = err.get_response().headers["Allow"]
        return response

    @app.errorhandler(SQLAlchemyError)
    def _database_down(err: SQLAlchemyError) -> Response:
        app.logger.warning("database error: %s", err)
        return error_response(503, "unavailable", "database unavailable")

    @app.errorhandler(BackendUnavailable)
    def _unavailable(err: BackendUnavailable) -> Response:
        return error_response(503, "unavailable", str(err))

    @app.errorhandler(Exception)
    def _unexpected(err: Exception) -> Response:
        app.logger.exception("unhandled error")
        return error_response(500, "internal", "internal server error")
