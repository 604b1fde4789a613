"""Start-up shared by ``python app.py`` and gunicorn."""

from __future__ import annotations

import logging
import resource
import signal

from flask import Flask

from imchat.topics import TOPICS

log = logging.getLogger("imchat.serve")


def websocket_aware_handler() -> type:
    """gevent's handler, quiet about the socket a WebSocket session shut down.

    After a WebSocket session the route has shut the connection down; the
    server's attempt to write an HTTP response on it then fails, harmlessly.
    """
    from gevent.pywsgi import WSGIHandler

    class Handler(WSGIHandler):
        def handle_one_response(self) -> None:
            try:
                super().handle_one_response()
            except OSError:
                if not self.environ.get("imchat.websocket"):
                    raise
            if self.environ.get("imchat.websocket"):
                # The connection was a WebSocket: never read a request from it again.
                self.close_connection = True

    return Handler


def prepare(app: Flask) -> None:
    """Bring the process's backends to a servable state.

    The embedded default migrates its own SQLite file so that a fresh clone
    serves at once; in production migrations are a deploy step
    (``python -m imchat db upgrade``), never done by a web worker.
    """
    from imchat.factory import settings_of

    settings = settings_of(app)
    if not settings.database_url:
        from imchat.ops import migrate

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


def raise_open_file_limit() -> int:
    """Lift the soft limit on open files to the hard one: every WebSocket is a
    descriptor (two under gevent's own server), and the usual soft limit of
    1,024 would cap a gateway far below its 10,000 connections."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def serve(app: Flask, host: str, port: int) -> None:
    import gevent
    from gevent.pywsgi import WSGIServer

    raise_open_file_limit()
    server = WSGIServer((host, port), app, log=None, handler_class=websocket_aware_handler())

    def stop() -> None:
        log.info("shutting down")
        shutdown(app)
        server.stop(timeout=2)

    for signum in (signal.SIGTERM, signal.SIGINT):
        gevent.signal_handler(signum, stop)
    log.info("imchat listening on http://%s:%d", host, port)
    server.serve_forever()


def shutdown(app: Flask) -> None:
    """Leave the cluster cleanly: revoke the gateway's lease (its routes go at
    once instead of after 90 s), flush confirmations, stop the consumer."""
    gateway = app.extensions.get("imchat.gateway")
    if gateway is not None:
        gateway.stop()
    consumer = app.extensions.get("imchat.consumer")
    if consumer is not None:
        consumer.stop()
