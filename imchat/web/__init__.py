"""The browser chat client: ``/`` serves the single page, ``/static/...`` its files.

Plain HTML, CSS and ES modules (``static/app.js`` imports those under
``static/js/``): nothing to build, nothing fetched from a CDN.
"""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, Flask, Response, send_from_directory

STATIC_DIR = Path(__file__).parent / "static"
# The service worker lives beside static/, not in it: served from the root, its
# scope is the whole origin (a worker under /static/ could only control /static/).
SERVICE_WORKER = Path(__file__).parent / "sw.js"

# A module script runs only when served with a JavaScript type (the HTML
# standard's strict MIME check), so the types of the client's own files are
# named here instead of trusting the host's mime tables, which may lack them or
# say text/plain.
CONTENT_TYPES = {".js": "text/javascript", ".css": "text/css", ".html": "text/html"}

bp = Blueprint("web", __name__)


@bp.get("/")
def index() -> Response:
    """The chat client's page."""
    response = send_from_directory(STATIC_DIR, "index.html")
    # The page names its scripts without a version: make browsers revalidate so
    # a deploy is picked up on the next load.
    response.headers["Cache-Control"] = "no-cache"
    return response


@bp.get("/static/<path:filename>")
def static(filename: str) -> Response:
    """A file of the client, in subfolders too; a missing one is the API's 404.

    Without a max age (Flask's default) the answer says ``no-cache``: browsers
    revalidate every module, so a deploy never runs new modules beside old ones.
    """
    mimetype = CONTENT_TYPES.get(Path(filename).suffix)
    return send_from_directory(STATIC_DIR, filename, mimetype=mimetype)


@bp.get("/sw.js")
def service_worker() -> Response:
    """The Web Push service worker; revalidated like the page, so an update is picked up."""
    response = send_from_directory(
        SERVICE_WORKER.parent, SERVICE_WORKER.name, mimetype="text/javascript"
    )
    response.headers["Cache-Control"] = "no-cache"
    return response


def init_app(app: Flask) -> None:
    """Serve the web client from ``app``."""
    app.register_blueprint(bp)
