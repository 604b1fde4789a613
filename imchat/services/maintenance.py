"""The beat jobs (celery beat schedules them, see imchat/celery_app.py) and daily stats.

- ``imchat.purge_expired_history``, hourly: messages older than
  ``history_retention_days`` (365 days; 0 keeps them for ever), which are
  also the pending messages: nothing pending outlives its history.
- ``imchat.count_daily_stats``, every 10 minutes for today and at 00:05 UTC
  for yesterday: active users into ``daily_stats``, old ``active_users_daily``
  rows purged. The message counts are kept by the bus consumer
  (``imchat.services.stats``, in the transaction of each batch's pending rows).
- ``imchat.prune_stale_routes``, every 5 minutes: routes that no live
  gateway registration stands behind (in etcd: the gateway key is gone or
  held by another lease).

There is no sequence snapshot job: ``sequence_snapshots`` holds durable
*reservations* raised before any seq beyond them is handed out (see
docs/architecture.md), so a periodic snapshot would add nothing to
correctness.

Every job is idempotent (a second run finds nothing left to do), batched
(bounded rows per transaction and per run: the next run goes on) and safe
to run twice at once (atomic SQL, compare-and-delete in etcd).
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, date, datetime, timedelta
from typing import Any

from imchat.config import DAY
from imchat.container import Services
from imchat.services.jobs import job
from imchat.stores import history
from imchat.stores import stats as stats_store

log = logging.getLogger("imchat.maintenance")

PURGE_EXPIRED_HISTORY = "imchat.purge_expired_history"
COUNT_DAILY_STATS = "imchat.count_daily_stats"
PRUNE_STALE_ROUTES = "imchat.prune_stale_routes"

# Rows per DELETE, and DELETEs per run: one run stays short (a few seconds at
# most) and the hourly schedule drains any backlog over the following runs.
PURGE_BATCH = 5_000
PURGE_MAX_BATCHES = 20
# active_users_daily rows are kept this long; days older than that cannot be
# recounted (their rows are gone), so count_daily_stats leaves them alone.
ACTIVE_USERS_KEEP_DAYS = 35
# Stale routes come from bugs or lease re-creations: few. Bound a run anyway.
PRUNE_MAX_ROUTES = 1_000


# ------------------------------------------------------------ history purge
@job(PURGE_EXPIRED_HISTORY)
def purge_expired_history(services: Services, payload: Any = None) -> None:
    """Delete messages older than the retention (``history_retention_days``; 0 keeps all)."""
    days = services.settings.history_retention_days
    if days <= 0:
        log.debug("history retention 0: messages are kept for ever")
        return
    deleted = purge_history_before(services, _now_ms() - days * DAY * 1000)
    log.info("purged %d messages past the history retention", deleted)


def purge_history_before(
    services: Services,
    cutoff_ms: int,
    batch: int = PURGE_BATCH,
    max_batches: int = PURGE_MAX_BATCHES,
) -> int:
    """Delete messages with ``ts < cutoff_ms``, one transaction per batch.

    A pending message is never purged while its message is in history: it
    *is* the history row, so both go together.
    """
    deleted = 0
    for _ in range(max_batches):
        with services.db.session() as session:
            count = history.delete_before(session, cutoff_ms, batch)
        deleted += count
        if count < batch:
            break
    return deleted


# -------------------------------------------------------------- daily stats
@job(COUNT_DAILY_STATS)
def count_daily_stats(services: Services, day: Any = "today") -> None:
    """Roll a day's active users into ``daily_stats`` and purge old active-user rows.

    ``day`` is "today", "yesterday" or an ISO date (UTC). Running it again, or
    twice at once, writes the same count.
    """
    target = parse_day(str(day or "today"))
    active = refresh_day(services, target)
    purged = purge_old_active_users(services)
    log.info("daily stats of %s: %s active users; %d old rows purged", target, active, purged)


def refresh_day(services: Services, day: date) -> int | None:
    """Recount ``day``'s active users; None (nothing written) once its rows are purged."""
    if day < _today() - timedelta(days=ACTIVE_USERS_KEEP_DAYS - 1):
        return None  # recounting now would overwrite the real count with 0
    with services.db.session() as session:
        active = stats_store.count_active_users(session, day)
        stats_store.set_active_users(session, day, active)
    return active


def purge_old_active_users(
    services: Services, batch: int = PURGE_BATCH, max_batches: int = PURGE_MAX_BATCHES
) -> int:
    """Delete active-user rows older than ``ACTIVE_USERS_KEEP_DAYS``, in batches."""
    before = _today() - timedelta(days=ACTIVE_USERS_KEEP_DAYS - 1)
    deleted = 0
    for _ in range(max_batches):
        with services.db.session() as session:
            count = stats_store.purge_active_users(session, before, batch)
        deleted += count
        if count < batch:
            break
    return deleted


def daily_report(services: Services, days: int) -> list[dict[str, Any]]:
    """The last ``days`` UTC days, oldest first; a day without a row shows zeros."""
    last = _today()
    first = last - timedelta(days=days - 1)
    with services.db.session() as session:
        stored = {row.day: row for row in stats_store.days_between(session, first, last)}
    report = []
    for offset in range(days):
        day = first + timedelta(days=offset)
        row = stored.get(day)
        direct = row.direct_messages if row else 0
        group = row.group_messages if row else 0
        report.append(
            {
                "day": day.isoformat(),
                "messages": direct + group,
                "direct_messages": direct,
                "group_messages": group,
                "active_users": row.active_users if row else 0,
            }
        )
    return report


def parse_day(value: str) -> date:
    """ "today", "yesterday" (UTC) or an ISO date."""
    if value == "today":
        return _today()
    if value == "yesterday":
        return _today() - timedelta(days=1)
    return date.fromisoformat(value)


def _today() -> date:
    return datetime.now(UTC).date()


def _now_ms() -> int:
    return int(time.time() * 1000)


# ------------------------------------------------------------- route pruning
@job(PRUNE_STALE_ROUTES)
def prune_stale_routes(services: Services, payload: Any = None) -> None:
    """Delete routes that no live gateway registration stands behind (``Router.prune_stale``)."""
    pruned = services.router.prune_stale(PRUNE_MAX_ROUTES)
    log.info("pruned %d stale routes", pruned)
