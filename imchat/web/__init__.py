"""The browser chat client: ``/`` serves the single page, ``/static/...`` its files.

Plain HTML, CSS and an ES module: nothing to build, nothing fetched from a CDN.
"""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, Flask, Response, send_from_directory

STATIC_DIR = Path(__file__).parent / "static"

bp = Blueprint("web", __name__, static_folder=str(STATIC_DIR), static_url_path="/static")


@bp.get("/")
def index() -> Response:
    """The chat client's page."""
    response = send_from_directory(STATIC_DIR, "index.html")
    # The page names its scripts without a version: make browsers revalidate so
    # a deploy is picked up on the next load.
    response.headers["Cache-Control"] = "no-cache"
    return response


def init_app(app: Flask) -> None:
    """Serve the web client from ``app``."""
    app.register_blueprint(bp)
