"""The beat jobs (celery beat schedules them, see imchat/celery_app.py) and daily stats.

- ``imchat.purge_expired_pending``, hourly: pending rows older than
  ``pending_retention_days`` (7 days, the contract's guarantee 5).
- ``imchat.count_daily_stats``, every 10 minutes for today and at 00:05 UTC
  for yesterday: active users into ``daily_stats``, old ``active_users_daily``
  rows purged. The message counts are kept by the bus consumer
  (``imchat.services.stats``, in the transaction of each batch's pending rows).
- ``imchat.prune_stale_routes``, every 5 minutes: etcd routes whose gateway
  key is gone or held by another lease.

There is no sequence snapshot job: ``sequence_snapshots`` holds durable
*reservations* raised before any seq beyond them is handed out (see
docs/architecture.md), so a periodic snapshot would add nothing to
correctness.

Every job is idempotent (a second run finds nothing left to do), batched
(bounded rows per transaction and per run: the next run goes on) and safe
to run twice at once (atomic SQL, compare-and-delete in etcd).
"""

from __future__ import annotations

import base64
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from imchat.config import DAY
from imchat.container import Services
from imchat.models import OfflineMessage
from imchat.services.jobs import job
from imchat.stores import stats as stats_store

if TYPE_CHECKING:
    # Imported where used: only the pruning job needs the etcd client.
    from imchat.backends.router_etcd import _Endpoints, _Keys

log = logging.getLogger("imchat.maintenance")

PURGE_EXPIRED_PENDING = "imchat.purge_expired_pending"
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


# ------------------------------------------------------------ pending purge
@job(PURGE_EXPIRED_PENDING)
def purge_expired_pending(services: Services, payload: Any = None) -> None:
    """Delete pending messages older than the retention (``pending_retention_days``)."""
    retention_ms = services.settings.pending_retention_days * DAY * 1000
    deleted = purge_pending_before(services, _now_ms() - retention_ms)
    log.info("purged %d expired pending messages", deleted)


def purge_pending_before(
    services: Services,
    cutoff_ms: int,
    batch: int = PURGE_BATCH,
    max_batches: int = PURGE_MAX_BATCHES,
) -> int:
    """Delete pending rows with ``timestamp < cutoff_ms``, one transaction per batch."""
    condition = OfflineMessage.timestamp < cutoff_ms
    table = OfflineMessage.__table__
    deleted = 0
    for _ in range(max_batches):
        with services.db.session() as session:
            count = stats_store.delete_batch(session, table, condition, batch)  # type: ignore[arg-type]
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
    """Delete etcd routes that no live gateway registration stands behind.

    Embedded: nothing to do. The twin's routes live in the one process's
    memory, are dropped with their gateway, and vanish with the process.
    """
    if not services.settings.etcd_endpoints:
        log.debug("embedded router: routes live in process memory, nothing to prune")
        return
    pruned = prune_routes(services)
    log.info("pruned %d stale etcd routes", pruned)


def prune_routes(services: Services, limit: int = PRUNE_MAX_ROUTES) -> int:
    """Delete up to ``limit`` stale route keys; the number deleted.

    A route is stale when, at one revision of the prefix, its gateway's key
    is missing or is held by another lease than the route: routes hang on the
    gateway's lease, so such a route was left by a bug, written without a
    lease, or left on the old lease of a gateway id registered again. Each
    delete compares the route's mod_revision first: a route written again
    meanwhile (by its gateway) is kept.
    """
    from imchat.backends.router_etcd import REQUEST_TIMEOUT, _Endpoints, _Keys

    settings = services.settings
    endpoints = _Endpoints(settings.etcd_endpoint_list, REQUEST_TIMEOUT)
    keys = _Keys(settings.etcd_prefix)
    try:
        stale = stale_routes(_read_prefix(endpoints, keys.root), keys)[:limit]
        return sum(_delete_if_unchanged(endpoints, key, revision) for key, revision in stale)
    finally:
        endpoints.close()


@dataclass(frozen=True)
class _Entry:
    mod_revision: int
    lease: int


def stale_routes(entries: Mapping[str, _Entry], keys: _Keys) -> list[tuple[str, int]]:
    """(key, mod_revision) of every stale route among one snapshot's ``entries``."""
    stale = []
    for key, entry in entries.items():
        parsed = keys.parse(key)
        if parsed is None or parsed[1] is None:
            continue  # a gateway key, or not ours
        gateway = entries.get(keys.gateway(parsed[0]))
        if gateway is None or gateway.lease != entry.lease:
            stale.append((key, entry.mod_revision))
    return stale


def _read_prefix(endpoints: _Endpoints, root: str) -> dict[str, _Entry]:
    """Every key under ``root`` with its revision and lease, paged at one revision."""
    from imchat.backends.router_etcd import RANGE_PAGE_SIZE, _b64, _range_end, _text

    entries: dict[str, _Entry] = {}
    payload: dict[str, Any] = {"key": _b64(root), "range_end": _range_end(root)}
    payload.update(limit=RANGE_PAGE_SIZE, keys_only=True)
    while True:
        response = endpoints.post("/kv/range", payload)
        payload.setdefault("revision", int(response.get("header", {}).get("revision", 0)))
        kvs = response.get("kvs", [])
        for kv in kvs:
            # proto3 JSON leaves out zero values: no "lease" means no lease.
            entries[_text(kv["key"])] = _Entry(int(kv["mod_revision"]), int(kv.get("lease", 0)))
        if not kvs or not response.get("more"):
            return entries
        payload["key"] = _b64(base64.b64decode(kvs[-1]["key"]) + b"\0")


def _delete_if_unchanged(endpoints: _Endpoints, key: str, mod_revision: int) -> int:
    """1 when ``key`` was still at ``mod_revision`` and is now deleted, else 0."""
    from imchat.backends.router_etcd import _b64

    compare = {"key": _b64(key), "target": "MOD", "result": "EQUAL", "mod_revision": mod_revision}
    txn = {"compare": [compare], "success": [{"request_delete_range": {"key": _b64(key)}}]}
    response = endpoints.post("/kv/txn", txn)
    return 1 if response.get("succeeded") else 0
