"""Celery tasks: thin wrappers over the job functions of imchat.services.

Every task is idempotent and acks late: a worker killed mid-batch leaves the
task to run again, and running it again changes nothing already done.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from imchat.config import load_settings
from imchat.container import Services
from imchat.services import maintenance, pending  # noqa: F401 - registers the jobs
from imchat.services.jobs import JOBS, run_job
from imchat.services.push import notify  # noqa: F401 - registers the push job
from tasks import celery


@cache
def worker_services() -> Services:
    """One Services per worker process, built after the fork."""
    return Services(load_settings())


def _register(name: str) -> None:
    def run(payload: Any) -> None:
        run_job(worker_services(), name, payload)

    run.__name__ = name.rsplit(".", 1)[-1]
    celery.task(name=name, acks_late=True, reject_on_worker_lost=True)(run)


for _name in list(JOBS):
    _register(_name)
