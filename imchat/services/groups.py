"""Groups: creation, membership, roles, and the cached member lists.

Who may do what:
- members (any role) read the group and its member list;
- the owner and admins add members; only the owner may add an admin;
- only the owner changes roles; ``role: "owner"`` hands the group over and
  the old owner becomes an admin;
- the owner removes anyone, an admin removes plain members;
- anyone may leave. When the owner leaves, the longest-standing admin (else
  the longest-standing member) becomes owner; when the last member leaves the
  group is deleted.

Every change is published on the ``membership_change`` topic, one record
per member affected, written in the change's own transaction (a
transactional outbox, ``services/event_relay.py``) and published after its
commit, keyed by group id so that a group's
events stay in order. Each carries ``member_ids``, the members after the
change: the gateway sends the event to those plus ``user_id`` (the member
removed is no longer in the list but must hear of it).
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from imchat.backends.base import BackendUnavailable
from imchat.container import Services
from imchat.errors import APIError
from imchat.services import event_relay
from imchat.services.users import utcnow
from imchat.stores import conversations as conversation_store
from imchat.stores import event_outbox
from imchat.stores import groups as group_store
from imchat.stores import users as user_store
from imchat.stores.groups import GroupRecord, MemberRecord
from imchat.wire.bus import MembershipChange
from imchat.wire.topics import MEMBERSHIP_CHANGE

log = logging.getLogger(__name__)

MEMBER_ADDED = "member_added"
MEMBER_REMOVED = "member_removed"
ROLE_CHANGED = "role_changed"
MANAGERS = ("owner", "admin")


@dataclass(frozen=True)
class Membership:
    """One member's role in one group: the body of add and role-change answers."""

    group_id: str
    user_id: str
    role: str


@dataclass
class _Change:
    """The events of one membership transaction, published after its commit."""

    group_id: str
    actor_id: str
    events: list[tuple[str, str, str, int]] = field(default_factory=list)

    def record(self, event: str, user_id: str, role: str) -> None:
        self.events.append((event, user_id, role, int(time.time() * 1000)))

    def changes(self, member_ids: list[str]) -> list[MembershipChange]:
        """The bus records, each with the member list after the transaction."""
        return [
            MembershipChange(
                event, self.group_id, user_id, role, self.actor_id, ts, member_ids, len(member_ids)
            )
            for event, user_id, role, ts in self.events
        ]


# ------------------------------------------------------------------ cache
def cache_key(group_id: str) -> str:
    return f"group_members:{group_id}"


def member_ids(services: Services, group_id: str) -> list[str] | None:
    """The group's member ids (cached), or None when there is no such group.

    For the messaging path. A cache that is down is skipped, not fatal: the
    database answers instead.
    """
    try:
        cached = services.cache.get(cache_key(group_id))
    except BackendUnavailable:
        log.warning("group cache unreadable; reading members from the database")
        cached = None
    if cached is not None:
        return list(json.loads(cached))
    with services.db.session() as session:
        if group_store.get(session, group_id) is None:
            return None
        ids = group_store.member_ids(session, group_id)
    try:
        ttl = services.settings.group_cache_ttl_seconds
        services.cache.set(cache_key(group_id), json.dumps(ids), ttl)
    except BackendUnavailable:
        log.warning("group cache unwritable; member list not cached")
    return ids


def _invalidate_after_commit(services: Services, group_id: str) -> None:
    try:
        services.cache.delete(cache_key(group_id))
    except BackendUnavailable:
        log.exception("group %s: cache not invalidated after commit", group_id)


@contextmanager
def _changing(
    services: Services, group_id: str, actor_id: str
) -> Iterator[tuple[Session, _Change]]:
    """A membership transaction: invalidate the cache, write the events,
    commit, invalidate again, publish.

    The first delete runs before the commit so that, when the cache cannot be
    reached, nothing changes (503) rather than a stale list surviving its TTL;
    the second drops a list a reader may have cached from the old rows meanwhile.
    """
    change = _Change(group_id, actor_id)
    with services.db.session() as session:
        yield session, change
        if change.events:
            _update_conversation_members(session, change)
            services.cache.delete(cache_key(group_id))
            records = change.changes(group_store.member_ids(session, group_id))
            encoded = [(MEMBERSHIP_CHANGE.name, group_id, c.encode()) for c in records]
            event_outbox.add(session, encoded, int(time.time() * 1000))
    if change.events:
        _invalidate_after_commit(services, group_id)
        event_relay.publish_after_commit(services, group_id)


def _update_conversation_members(session: Session, change: _Change) -> None:
    """In the membership transaction: who joins the group's conversation (from
    its current seq on) and whose window in it closes."""
    joined = [user_id for event, user_id, _, _ in change.events if event == MEMBER_ADDED]
    if joined:
        conversation_store.join_group(session, change.group_id, joined, int(time.time() * 1000))
    for event, user_id, _, _ in change.events:
        if event == MEMBER_REMOVED:
            conversation_store.leave_group(session, change.group_id, user_id)


# ------------------------------------------------------------- lookups
def _group_or_404(session: Session, group_id: str, *, lock: bool = False) -> GroupRecord:
    group = group_store.lock(session, group_id) if lock else group_store.get(session, group_id)
    if group is None:
        raise APIError(404, "no such group")
    return group


def _member_role(session: Session, group_id: str, user_id: str) -> str:
    """The caller's role; 403 when the caller is not a member."""
    role = group_store.role_of(session, group_id, user_id)
    if role is None:
        raise APIError(403, "only members of the group may do this")
    return role


# ------------------------------------------------------------- use cases
def create_group(
    services: Services, owner_id: str, name: str, member_ids: Sequence[str]
) -> GroupRecord:
    """Create a group owned by the caller with the given members (404 for unknown users)."""
    others = [u for u in dict.fromkeys(member_ids) if u != owner_id]
    group_id = uuid.uuid4().hex
    with _changing(services, group_id, owner_id) as (session, change):
        unknown = user_store.missing(session, others)
        if unknown:
            raise APIError(404, "unknown member ids", details={"unknown_user_ids": unknown})
        members = [(owner_id, "owner"), *((u, "member") for u in others)]
        group = group_store.insert(session, group_id, name, owner_id, members, utcnow())
        for user_id, role in members:
            change.record(MEMBER_ADDED, user_id, role)
    return group


def groups_of(services: Services, user_id: str) -> list[tuple[GroupRecord, str]]:
    """The caller's groups, each with the caller's role in it."""
    with services.db.session() as session:
        return group_store.of_user(session, user_id)


def get_group(services: Services, actor_id: str, group_id: str) -> GroupRecord:
    """The group, for its members only."""
    with services.db.session() as session:
        group = _group_or_404(session, group_id)
        _member_role(session, group_id, actor_id)
    return group


def list_members(services: Services, actor_id: str, group_id: str) -> list[MemberRecord]:
    """The members with their roles, longest-standing first; for members only."""
    with services.db.session() as session:
        _group_or_404(session, group_id)
        _member_role(session, group_id, actor_id)
        return group_store.members(session, group_id)


def add_member(
    services: Services, actor_id: str, group_id: str, user_id: str, role: str = "member"
) -> Membership:
    """Add a user as member or admin; owner and admins only, admins add members only."""
    try:
        with _changing(services, group_id, actor_id) as (session, change):
            _group_or_404(session, group_id, lock=True)
            actor_role = _member_role(session, group_id, actor_id)
            if actor_role not in MANAGERS:
                raise APIError(403, "only the owner or an admin may add members")
            if role != "member" and actor_role != "owner":
                raise APIError(403, "only the owner may add an admin")
            if not user_store.exists(session, user_id):
                raise APIError(404, "no such user")
            if group_store.role_of(session, group_id, user_id) is not None:
                raise _already_member()
            group_store.add_member(session, group_id, user_id, role, utcnow())
            change.record(MEMBER_ADDED, user_id, role)
    except IntegrityError:
        raise _already_member() from None  # lost a race with another add
    return Membership(group_id, user_id, role)


def _already_member() -> APIError:
    return APIError(409, "the user is already a member")


def change_role(
    services: Services, actor_id: str, group_id: str, user_id: str, role: str
) -> Membership:
    """Set a member's role; owner only. ``owner`` hands the group over."""
    with _changing(services, group_id, actor_id) as (session, change):
        group = _group_or_404(session, group_id, lock=True)
        if _member_role(session, group_id, actor_id) != "owner":
            raise APIError(403, "only the owner may change roles")
        current = group_store.role_of(session, group_id, user_id)
        if current is None:
            raise APIError(404, "the user is not a member of the group")
        if current == role:
            return Membership(group_id, user_id, role)
        if user_id == group.owner_id:
            raise APIError(409, "the owner's role changes only by handing the group to another")
        if role == "owner":
            _hand_over(session, change, group_id, group.owner_id, user_id)
        else:
            group_store.set_role(session, group_id, user_id, role)
            change.record(ROLE_CHANGED, user_id, role)
    return Membership(group_id, user_id, role)


def _hand_over(
    session: Session, change: _Change, group_id: str, old_owner: str | None, new_owner: str
) -> None:
    """Make ``new_owner`` the owner; a remaining old owner becomes an admin."""
    group_store.set_owner(session, group_id, new_owner)
    group_store.set_role(session, group_id, new_owner, "owner")
    change.record(ROLE_CHANGED, new_owner, "owner")
    if old_owner is not None:
        group_store.set_role(session, group_id, old_owner, "admin")
        change.record(ROLE_CHANGED, old_owner, "admin")


def remove_member(services: Services, actor_id: str, group_id: str, user_id: str) -> None:
    """Remove a member (owner: anyone; admin: plain members) or leave (anyone)."""
    with _changing(services, group_id, actor_id) as (session, change):
        group = _group_or_404(session, group_id, lock=True)
        if actor_id == user_id:
            role = group_store.role_of(session, group_id, user_id)
            if role is None:
                raise APIError(404, "you are not a member of the group")
        else:
            role = _removable_role(session, group_id, actor_id, user_id)
        group_store.remove_member(session, group_id, user_id)
        change.record(MEMBER_REMOVED, user_id, role)
        if user_id == group.owner_id:
            _after_owner_left(session, change, group_id, user_id)


def _removable_role(session: Session, group_id: str, actor_id: str, user_id: str) -> str:
    """The role of the member ``actor_id`` wants to remove; 403 or 404 when it may not."""
    actor_role = _member_role(session, group_id, actor_id)
    if actor_role not in MANAGERS:
        raise APIError(403, "only the owner or an admin may remove members")
    role = group_store.role_of(session, group_id, user_id)
    if role is None:
        raise APIError(404, "the user is not a member of the group")
    if actor_role == "admin" and role != "member":
        raise APIError(403, "an admin may remove plain members only")
    return role


def _after_owner_left(session: Session, change: _Change, group_id: str, owner_id: str) -> None:
    """Hand the group to the longest-standing admin, else member; delete it when empty."""
    heir = group_store.successor(session, group_id, owner_id)
    if heir is None:
        group_store.delete_group(session, group_id)
    else:
        _hand_over(session, change, group_id, None, heir)
