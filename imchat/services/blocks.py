"""Blocks: a user stops another's direct messages, typing and presence to them.

Groups are shared spaces: a block changes nothing there but typing. Each
user's two lists (whom they block, who blocks them) are cached, so the
messaging path asks nothing of the database once warm; a change drops both
users' entries after its commit. A cache that is down is skipped.
"""

from __future__ import annotations

import json
import logging

from imchat.backends.base import BackendUnavailable
from imchat.container import Services
from imchat.errors import APIError
from imchat.stores import blocks as block_store
from imchat.stores import users as user_store

log = logging.getLogger(__name__)


def blocking_key(user_id: str) -> str:
    return f"blocks:of:{user_id}"


def blockers_key(user_id: str) -> str:
    return f"blocks:by:{user_id}"


def block(services: Services, user_id: str, other_id: str) -> None:
    """``user_id`` blocks ``other_id``: 400 for oneself, 404 for no such user; idempotent."""
    if other_id == user_id:
        raise APIError(400, "you cannot block yourself")
    with services.db.session() as session:
        if not user_store.exists(session, other_id):
            raise APIError(404, "no such user")
        block_store.add(session, user_id, other_id)
    _invalidate(services, user_id, other_id)


def unblock(services: Services, user_id: str, other_id: str) -> None:
    """Lift the block (nothing when there was none)."""
    with services.db.session() as session:
        block_store.remove(session, user_id, other_id)
    _invalidate(services, user_id, other_id)


def blocked_of(services: Services, user_id: str) -> list[str]:
    """Whom ``user_id`` blocks, oldest block first (cached)."""
    return _cached(services, blocking_key(user_id), user_id, block_store.blocked_by)


def blockers_of(services: Services, user_id: str) -> list[str]:
    """Who blocks ``user_id`` (cached)."""
    return _cached(services, blockers_key(user_id), user_id, block_store.blockers_of)


def blocked_between(services: Services, a: str, b: str) -> bool:
    """Whether either of ``a`` and ``b`` blocks the other."""
    return b in blocked_of(services, a) or b in blockers_of(services, a)


def shunned(services: Services, user_id: str) -> set[str]:
    """Everyone ``user_id`` blocks or is blocked by: who gets no typing from them."""
    return {*blocked_of(services, user_id), *blockers_of(services, user_id)}


def _cached(services: Services, key: str, user_id: str, read: block_store.Lookup) -> list[str]:
    try:
        cached = services.cache.get(key)
    except BackendUnavailable:
        log.warning("block cache unreadable; reading blocks from the database")
        cached = None
    if cached is not None:
        return list(json.loads(cached))
    with services.db.session() as session:
        ids = read(session, user_id)
    try:
        services.cache.set(key, json.dumps(ids), services.settings.group_cache_ttl_seconds)
    except BackendUnavailable:
        log.warning("block cache unwritable; blocks not cached")
    return ids


def _invalidate(services: Services, user_id: str, other_id: str) -> None:
    for key in (blocking_key(user_id), blockers_key(other_id)):
        try:
            services.cache.delete(key)
        except BackendUnavailable:
            log.exception("block cache entry %s not dropped after a change", key)
