"""The HTTP API under /api/v1 and the health endpoints."""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    from imchat.api import auth, blocks, conversations, groups, health, openapi, push, users

    # No redirects: "/groups//members" would be a 308 with an HTML body.
    # Unmerged, an empty path segment is simply an unknown route (JSON 404).
    app.url_map.merge_slashes = False
    app.register_blueprint(health.bp)
    app.register_blueprint(auth.bp)
    app.register_blueprint(users.bp)
    app.register_blueprint(blocks.bp)
    app.register_blueprint(groups.bp)
    app.register_blueprint(conversations.bp)
    app.register_blueprint(push.bp)
    app.register_blueprint(openapi.bp)
