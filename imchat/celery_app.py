"""The Celery application. Embedded: tasks run in-process (always eager)."""

from __future__ import annotations

from celery import Celery

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
            # A whole worker lost: its unacked task comes back after ~30 s
            # (kombu scans every restore_interval x throttle, see ENVIRONMENT.md).
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
    return celery
