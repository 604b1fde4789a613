"""Start-up shared by ``python app.py`` and gunicorn."""

from __future__ import annotations

import logging

from flask import Flask

log = logging.getLogger("imchat.serve")


def prepare(app: Flask) -> None:
    """Bring the process's backends to a servable state.

    The embedded default migrates its own SQLite file so that a fresh clone
    serves at once; in production migrations are a deploy step
    (``python -m imchat db upgrade``), never done by a web worker.
    """
    from imchat.factory import settings_of

    settings = settings_of(app)
    if not settings.database_url:
        from imchat import migrate

        migrate.upgrade(settings)


def serve(app: Flask, host: str, port: int) -> None:
    from gevent.pywsgi import WSGIServer

    server = WSGIServer((host, port), app, log=None)
    log.info("imchat listening on http://%s:%d", host, port)
    server.serve_forever()
