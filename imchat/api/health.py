"""Liveness, readiness and the Prometheus metrics."""

from __future__ import annotations

import hmac

from flask import Blueprint, Response, current_app, jsonify, request

from imchat.config import Settings
from imchat.container import services_of
from imchat.errors import APIError

bp = Blueprint("health", __name__)
METRICS_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="metrics"'}


@bp.get("/healthz")
def healthz() -> Response:
    return jsonify({"status": "ok"})


@bp.get("/readyz")
def readyz() -> tuple[Response, int]:
    results = services_of(current_app).check_readiness()
    failing = {name: why for name, why in results.items() if why}
    body: dict[str, object] = {
        "status": "ok" if not failing else "unavailable",
        "backends": {name: "ok" if why is None else why for name, why in results.items()},
    }
    if failing:
        names = ", ".join(sorted(failing))
        body["error"] = {"code": "unavailable", "message": f"backend down: {names}"}
        return jsonify(body), 503
    return jsonify(body), 200


@bp.get("/metrics")
def prometheus_metrics() -> Response:
    from imchat.metrics import exposition

    require_metrics_token(services_of(current_app).settings)
    body, content_type = exposition()
    return Response(body, content_type=content_type)


def require_metrics_token(settings: Settings) -> None:
    """With ``IMCHAT_METRICS_TOKEN`` set, a scrape must bring it as a Bearer token."""
    if not settings.metrics_token:
        return
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    expected = settings.metrics_token.encode()
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), expected):
        raise APIError(401, "metrics token required", headers=METRICS_CHALLENGE)


def check_metrics_exposure(settings: Settings) -> None:
    """Refuse to serve, with real backends configured, a /metrics open to anyone
    who reaches the port, unless ``IMCHAT_METRICS_PUBLIC=1`` says it is internal."""
    if settings.embedded or settings.metrics_token or settings.metrics_public:
        return
    raise RuntimeError(
        "IMCHAT_METRICS_TOKEN must be set when real backends are configured "
        "(or IMCHAT_METRICS_PUBLIC=1 when only an internal network reaches /metrics)"
    )
