"""Background jobs: Celery tasks in production, a direct call in the embedded default.

The job functions take the Services and one JSON-able payload; tasks/jobs.py
wraps each in a Celery task of the same name. ``Services.jobs`` is the one
place that picks how a job runs.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from imchat import metrics
from imchat.backends.base import BackendUnavailable

if TYPE_CHECKING:
    from celery import Celery

    from imchat.container import Services

Job = Callable[["Services", Any], None]
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


class JobRunner(abc.ABC):
    # True when a dispatched job has run by the time dispatch returns: callers
    # that batch work to save a broker round trip need not batch then.
    inline: bool

    @abc.abstractmethod
    def dispatch(self, name: str, payload: Any) -> None:
        """Run the job (or hand it over); raise BackendUnavailable if we cannot."""


class InlineJobs(JobRunner):
    """The embedded default: a job runs in the caller's thread."""

    inline = True

    def __init__(self, services: Services) -> None:
        self.services = services

    def dispatch(self, name: str, payload: Any) -> None:
        run_job(self.services, name, payload)


class CeleryJobs(JobRunner):
    """Production: a job is a Celery task, run by a worker."""

    inline = False

    def __init__(self, celery: Celery) -> None:
        self.celery = celery

    def dispatch(self, name: str, payload: Any) -> None:
        try:
            self.celery.send_task(name, args=[payload])
        except Exception as exc:  # kombu raises many types when the broker is down
            raise BackendUnavailable("celery", str(exc)) from exc
