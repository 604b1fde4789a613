"""The HTTP API under /api/v1 and the health endpoints."""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    from imchat.api import health

    app.register_blueprint(health.bp)
