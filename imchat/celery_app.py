"""The Celery application. Embedded: tasks run in-process (always eager)."""

from __future__ import annotations

from typing import Any

from celery import Celery
from celery.schedules import crontab

from imchat.config import Settings


def make_celery(settings: Settings) -> Celery:
    celery = Celery("imchat", include=["tasks.jobs"])
    if settings.celery_broker_url:
        celery.conf.update(
            broker_url=settings.celery_broker_url,
            result_backend=settings.celery_result_backend or None,
            task_acks_late=True,
            task_reject_on_worker_lost=True,
            worker_prefetch_multiplier=1,
            task_ignore_result=True,
            # A whole worker lost: its unacked task comes back after ~30 s.
            # kombu's Redis transport only looks for expired unacked tasks
            # every restore_interval x throttle seconds, so both are small.
            broker_transport_options={
                "visibility_timeout": 30,
                "unacked_restore_interval": 5,
                "unacked_restore_throttle": 1,
            },
            broker_connection_retry_on_startup=True,
        )
    else:
        celery.conf.update(
            broker_url="memory://",
            task_always_eager=True,
            task_eager_propagates=True,
            task_ignore_result=True,
        )
    celery.conf.update(
        task_serializer="json",
        accept_content=["json"],
        timezone="UTC",
        worker_hijack_root_logger=False,
    )
    celery.conf.beat_schedule = beat_schedule()
    return celery


def beat_schedule() -> dict[str, dict[str, Any]]:
    """What ``celery -A tasks beat`` sends (jobs of imchat.services.maintenance, UTC).

    Each run expires by the next one: runs queued while no worker was up
    would only repeat each other (the jobs are idempotent).

    No sequence snapshot job: seqs are reserved durably before they are
    handed out (docs/architecture.md), so nothing needs a periodic snapshot.
    """
    return {
        "purge-expired-history": {
            "task": "imchat.purge_expired_history",
            "schedule": crontab(minute=17),  # hourly, off the top of the hour
            "args": [None],  # every task takes one payload (tasks/jobs.py)
            "options": {"expires": 3600},
        },
        "daily-stats-today": {
            "task": "imchat.count_daily_stats",
            "schedule": crontab(minute="*/10"),
            "args": ["today"],
            "options": {"expires": 600},
        },
        "daily-stats-yesterday": {
            # Once the day is over: its last minutes are counted too.
            "task": "imchat.count_daily_stats",
            "schedule": crontab(minute=5, hour=0),
            "args": ["yesterday"],
            "options": {"expires": 12 * 3600},
        },
        "prune-stale-routes": {
            "task": "imchat.prune_stale_routes",
            "schedule": crontab(minute="*/5"),
            "args": [None],
            "options": {"expires": 300},
        },
    }
