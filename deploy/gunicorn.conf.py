"""gunicorn settings of the web process (see the Procfile)."""

from typing import Any

from imchat.serve import raise_open_file_limit

raise_open_file_limit()  # the master's limit is its workers' limit

# Whatever access log is turned on (--access-logfile, access_log_format), the
# credentials in /ws?token=... / ?ticket=... and Authorization never reach it.
logger_class = "imchat.access_log.RedactingLogger"


def child_exit(server: Any, worker: Any) -> None:
    """A dead worker's live gauges (open connections) must stop counting."""
    from imchat.metrics import mark_process_dead

    mark_process_dead(worker.pid)


def worker_exit(server: Any, worker: Any) -> None:
    """A worker leaving (restart, scale-down): revoke its gateway lease now."""
    from imchat.serve import shutdown

    shutdown(worker.wsgi)
