"""The transactional outbox's publisher: bus records written in the
transaction of the change they announce (``stores/event_outbox.py``) are
published right after its commit, and by the bus consumer's relay should
that fail or the process die in between.

Records of one key (a group id) go out in the order they were written: a
publisher holds the group's row lock (the lock every membership change of
the group takes) while it publishes the key's records and deletes them, so
two publishers never interleave. A crash after a publish and before the
delete publishes them again: membership events are at least once.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from imchat.backends.base import BackendUnavailable
from imchat.stores import event_outbox
from imchat.stores import groups as group_store

if TYPE_CHECKING:
    from imchat.container import Services

log = logging.getLogger("imchat.outbox")
# What the commit's own publish had time to do before the relay steps in.
RELAY_AFTER_SECONDS = 5.0


def publish_waiting(services: Services, key: str) -> int:
    """Publish the key's waiting records, oldest first, then delete them."""
    with services.db.session() as session:
        group_store.lock(session, key)  # one publisher per group at a time
        waiting = event_outbox.of_key(session, key)
        if waiting:
            services.bus.publish_many([record for _, record in waiting])
            event_outbox.remove(session, [event_id for event_id, _ in waiting])
    return len(waiting)


def publish_after_commit(services: Services, key: str) -> None:
    """The fast path: on failure the records wait for the relay."""
    try:
        publish_waiting(services, key)
    except BackendUnavailable as exc:
        log.warning("events of %s not published yet (the relay will): %s", key, exc)


def relay(services: Services) -> int:
    """Publish every record left waiting longer than ``RELAY_AFTER_SECONDS``."""
    before_ms = int((time.time() - RELAY_AFTER_SECONDS) * 1000)
    with services.db.session() as session:
        keys = event_outbox.keys_waiting_since(session, before_ms)
    published = sum(publish_waiting(services, key) for key in keys)
    if published:
        log.info("relayed %d events left waiting", published)
    return published
