"""Seq assignment with a durable reservation, so that seqs never go back.

Every seq handed out is at most the conversation's reservation in
``sequence_snapshots``; the reservation is raised a block
(``seq_snapshot_interval``) at a time before any seq above it leaves this
module. A counter lost by Redis is recreated at the reservation.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from imchat.backends.base import SeqAssignment, SeqRequest
from imchat.container import Services
from imchat.stores import sequences as sequence_store

log = logging.getLogger("imchat.sequences")


def assign(services: Services, requests: Sequence[SeqRequest]) -> list[SeqAssignment]:
    """The seq of every request, in request order within each conversation."""
    ttl = services.settings.dedup_ttl_seconds
    results = services.seqs.assign_seqs(requests, ttl)
    lost = sorted({requests[i].conversation_id for i, r in enumerate(results) if r is None})
    if lost:
        restore_counters(services, lost)
        again = [i for i, r in enumerate(results) if r is None]
        for i, result in zip(
            again, services.seqs.assign_seqs([requests[i] for i in again], ttl), strict=True
        ):
            if result is None:
                raise RuntimeError(f"counter of {requests[i].conversation_id} vanished again")
            results[i] = result
    assigned = [r for r in results if r is not None]
    _reserve_beyond_ceilings(services, requests, assigned)
    return assigned


def restore_counters(services: Services, conversation_ids: Sequence[str]) -> None:
    """Recreate counters above everything ever handed out, one block reserved ahead.

    New conversations come here too (they have no counter yet): a burst of
    them costs one transaction, not one each.
    """
    interval = services.settings.seq_snapshot_interval
    with services.db.session() as session:
        floors = sequence_store.reserved(session, conversation_ids)
        sequence_store.reserve(session, {c: floor + interval for c, floor in floors.items()})
    for conversation_id, floor in floors.items():
        if floor:
            log.warning("seq counter of %s was lost; restarting above %d", conversation_id, floor)
        services.seqs.init_seq(conversation_id, floor, floor + interval)


def _reserve_beyond_ceilings(
    services: Services, requests: Sequence[SeqRequest], assigned: Sequence[SeqAssignment]
) -> None:
    needed: dict[str, int] = {}
    for request, result in zip(requests, assigned, strict=True):
        if not result.duplicate and result.seq > result.ceiling:
            needed[request.conversation_id] = max(
                needed.get(request.conversation_id, 0), result.seq
            )
    if not needed:
        return
    interval = services.settings.seq_snapshot_interval
    with services.db.session() as session:
        sequence_store.reserve(session, {c: seq + interval for c, seq in needed.items()})
    for conversation_id, seq in needed.items():
        services.seqs.raise_ceiling(conversation_id, seq + interval)
