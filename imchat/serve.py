"""Start-up shared by ``python app.py`` and gunicorn."""

from __future__ import annotations

import logging

from flask import Flask

from imchat.topics import TOPICS

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
    start_embedded_consumer(app)


def start_embedded_consumer(app: Flask) -> None:
    """With the embedded bus, nobody else can read it: consume in this process."""
    from imchat.consumer import DeliveryConsumer
    from imchat.factory import services_of

    services = services_of(app)
    if services.settings.kafka_bootstrap_servers or "imchat.consumer" in app.extensions:
        return
    services.bus.ensure_topics(TOPICS, 1, 1)
    consumer = DeliveryConsumer(services)
    consumer.start()
    app.extensions["imchat.consumer"] = consumer


def serve(app: Flask, host: str, port: int) -> None:
    from gevent.pywsgi import WSGIServer

    server = WSGIServer((host, port), app, log=None)
    log.info("imchat listening on http://%s:%d", host, port)
    server.serve_forever()
