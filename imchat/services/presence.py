"""Presence: online while a user has a connection on any gateway, offline a
grace period (``presence_grace_seconds``, 10 s) after the last one closed.

The router says who has a connection now (its routes live under the
gateways' leases, so a dead gateway's users lose theirs when its lease
ends). What peers were last *told* lives in the cache, shared by every
gateway (Redis in production), one key per user:

    "on"          online was announced
    "gone:<ms>"   the last connection closed at <ms>; offline not yet announced
    "off"         offline was announced (absent: never seen, or Redis lost)

Every change of state is a compare-and-set, so when several gateways see the
same change (each one watches every route), exactly one announces it. A
reload within the grace period finds "gone:" and announces nothing.

An announcement is one fan-out: one read of the user's direct peers, then
one frame to each gateway holding a connection of one of them (never a poll).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from imchat import metrics
from imchat.backends.base import BackendUnavailable
from imchat.services import blocks
from imchat.services.delivery.outbox import Outbox
from imchat.stores import conversations as conversation_store
from imchat.stores import users as user_store
from imchat.wire.frames import PresenceFrame

if TYPE_CHECKING:
    from imchat.container import Services

log = logging.getLogger("imchat.presence")
ON, OFF, GONE = "on", "off", "gone:"  # the cache states
ONLINE, OFFLINE = "online", "offline"  # what peers are told
STATE_TTL_SECONDS = 30 * 24 * 3600


def state_key(user_id: str) -> str:
    return f"presence:{user_id}"


def now_ms() -> int:
    return int(time.time() * 1000)


# --------------------------------------------------------------- changes
def arrive(services: Services, user_id: str) -> None:
    """The user's first connection on a gateway opened."""
    previous = services.cache.exchange(state_key(user_id), ON, STATE_TTL_SECONDS)
    if previous is None or previous == OFF:
        announce(services, user_id, ONLINE, None)
    # "gone:": a reload (or a second device) within the grace period: peers
    # never saw it go. "on": a second connection, or a reconnect whose
    # departure this gateway has not worked off yet; peers were told online
    # and nobody told them otherwise (even when every gateway died at once,
    # which leaves "on" behind: the conversation list says what stands).


def depart(services: Services, user_id: str, at_ms: int) -> str | None:
    """The user was left without any route; the state to settle after the
    grace period ("gone:<ms>"), or None when they are routed again already."""
    if services.router.gateways_for(user_id):
        return None
    gone = f"{GONE}{at_ms}"
    key = state_key(user_id)
    # An absent key is an "on" whose Redis was lost: peers were told online.
    if not services.cache.replace(key, ON, gone, STATE_TTL_SECONDS):
        services.cache.replace(key, None, gone, STATE_TTL_SECONDS)
    # Every gateway that saw the departure settles it (one wins): the one that
    # wrote "gone:" may die during the grace period.
    state = services.cache.get(key)
    return state if state is not None and state.startswith(GONE) else None


def settle(services: Services, user_id: str, state: str) -> None:
    """The grace period of ``state`` ("gone:<ms>") is over: offline, unless back."""
    key = state_key(user_id)
    if services.router.gateways_for(user_id):
        services.cache.replace(key, state, ON, STATE_TTL_SECONDS)
        return
    if not services.cache.replace(key, state, OFF, STATE_TTL_SECONDS):
        return  # back online, or another gateway settled it
    last_seen = int(state.removeprefix(GONE))
    with services.db.session() as session:
        user_store.set_last_seen(session, user_id, last_seen)
    announce(services, user_id, OFFLINE, last_seen)


def announce(services: Services, user_id: str, status: str, last_seen: int | None) -> None:
    """Tell the user's connected direct peers (but those it shuns) of the change."""
    with services.db.session() as session:
        peers = conversation_store.direct_peers(session, user_id)
    shunned = blocks.shunned(services, user_id) if peers else set()
    audience = [peer for peer in peers if peer not in shunned]
    metrics.PRESENCE_CHANGES.labels(status).inc()
    if audience:
        outbox = Outbox(services)
        outbox.push_frame(PresenceFrame(user_id, status, last_seen).to_dict(), audience)
        outbox.send()


# --------------------------------------------------------------- reading
@dataclass(frozen=True)
class PeerFacts:
    """What the database says of a direct peer, read with the conversation list."""

    last_seen_ms: int | None
    shunned: bool  # a block stands between viewer and peer, either way


def presence_of(
    services: Services, peers: Mapping[str, PeerFacts]
) -> dict[str, dict[str, Any] | None]:
    """``{"status", "last_seen"}`` of each peer (None where a block stands between)."""
    visible = [u for u, facts in peers.items() if not facts.shunned]
    try:
        states = services.cache.get_many([state_key(u) for u in visible]) if visible else []
    except BackendUnavailable:
        log.warning("presence states unreadable; presence from the router alone")
        states = [None] * len(visible)
    grace_ms = services.settings.presence_grace_seconds * 1000
    out: dict[str, dict[str, Any] | None] = dict.fromkeys(peers)
    for user_id, state in zip(visible, states, strict=True):
        left_at = int(state.removeprefix(GONE)) if state and state.startswith(GONE) else None
        # Within the grace period peers were not told offline yet; a "gone:"
        # left far behind by a dead gateway no longer counts.
        leaving = left_at is not None and now_ms() - left_at < 2 * grace_ms + 5000
        if services.router.gateways_for(user_id) or leaving:
            out[user_id] = {"status": ONLINE, "last_seen": None}
        else:
            last_seen = peers[user_id].last_seen_ms or left_at
            out[user_id] = {"status": OFFLINE, "last_seen": last_seen}
    return out
