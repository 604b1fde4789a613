"""The app factory: defaults, then IMCHAT_* variables, then overrides."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import Flask

from imchat import errors, logs, security
from imchat.config import load_settings
from imchat.container import Services, services_of, settings_of


def create_app(
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    services: Services | None = None,
) -> Flask:
    settings = services.settings if services else load_settings(environ, overrides)
    logs.configure(settings)
    app = Flask("imchat", static_folder=None)
    app.config.update(
        JSON_SORT_KEYS=False,
        MAX_CONTENT_LENGTH=settings.max_frame_bytes,
    )
    app.extensions["imchat"] = services or Services(settings)
    errors.init_app(app)
    security.init_app(app)

    from imchat import api
    from imchat.gateway import ws

    api.init_app(app)
    ws.init_app(app)
    from imchat import web

    web.init_app(app)
    return app


__all__ = ["create_app", "services_of", "settings_of"]
