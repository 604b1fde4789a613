"""Liveness, readiness and the Prometheus metrics."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify

from imchat.container import services_of

bp = Blueprint("health", __name__)


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

    body, content_type = exposition()
    return Response(body, content_type=content_type)
