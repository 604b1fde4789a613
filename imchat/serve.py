"""Start-up shared by ``python app.py`` and gunicorn."""

from __future__ import annotations

import logging
import resource
import signal

from flask import Flask

from imchat.container import services_of

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
    """Refuse settings unsafe to serve with, then bring the process's backends
    to a servable state (``Services.prepare``)."""
    from imchat.api.health import check_metrics_exposure

    check_metrics_exposure(services_of(app).settings)
    services_of(app).prepare()


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
    """Leave the cluster cleanly (``Services.stop_serving``)."""
    services_of(app).stop_serving()
