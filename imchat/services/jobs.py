"""Background jobs: Celery tasks in production, a direct call in the embedded default.

The job functions take the Services and one JSON-able payload; tasks/jobs.py
wraps each in a Celery task of the same name.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from imchat import metrics
from imchat.backends.base import BackendUnavailable
from imchat.container import Services

Job = Callable[[Services, Any], None]
JOBS: dict[str, Job] = {}


def job(name: str) -> Callable[[Job], Job]:
    def register(func: Job) -> Job:
        JOBS[name] = func
        return func

    return register


def run_job(services: Services, name: str, payload: Any) -> None:
    """Run one job here and now, timed."""
    with metrics.TASK_SECONDS.labels(name).time():
        JOBS[name](services, payload)


def dispatch(services: Services, name: str, payload: Any) -> None:
    """Run the job now (embedded) or hand it to Celery; raise BackendUnavailable if we cannot."""
    if not services.settings.celery_broker_url:
        run_job(services, name, payload)
        return
    try:
        services.celery.send_task(name, args=[payload])
    except Exception as exc:  # kombu raises many types when the broker is down
        raise BackendUnavailable("celery", str(exc)) from exc
