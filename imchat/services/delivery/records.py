"""The bus consumer's work on one batch: seqs, pending rows, pushes, acks.

Order matters for the guarantees: seqs are assigned in bus order (one
partition per conversation), pending rows are made durable before anything
is pushed, and the caller commits the bus offsets only after this returns.
A batch replayed after a crash gets the same seqs back (``assign`` is
idempotent per sender client id) and stores nothing twice.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, TypeVar

from imchat import metrics
from imchat.backends.base import BusRecord, SeqAssignment, SeqRequest
from imchat.services import groups, sequences, stats
from imchat.services.delivery.outbox import Outbox
from imchat.services.pending import CHUNK, PendingRow, pending_rows, store_pending
from imchat.stores import db
from imchat.stores import pending as pending_store
from imchat.wire.bus import MembershipChange, MessageEnvelope
from imchat.wire.codec import Record, WireError
from imchat.wire.frames import AckFrame, EventFrame, MsgFrame
from imchat.wire.topics import MEMBERSHIP_CHANGE

if TYPE_CHECKING:
    from imchat.container import Services

log = logging.getLogger("imchat.delivery")
R = TypeVar("R", bound=Record)


def process_records(services: Services, records: Sequence[BusRecord]) -> None:
    """Handle one polled batch of message and membership records."""
    outbox = Outbox(services)
    messages = [r for r in records if r.topic != MEMBERSHIP_CHANGE.name]
    envelopes = [e for e in (_decode(MessageEnvelope, r) for r in messages) if e]
    if envelopes:
        _deliver_messages(services, envelopes, outbox)
    for record in records:
        if record.topic == MEMBERSHIP_CHANGE.name:
            change = _decode(MembershipChange, record)
            if change is not None:
                _announce_membership_change(change, outbox)
    outbox.send()


def _decode(kind: type[R], record: BusRecord) -> R | None:
    try:
        return kind.decode(record.value)
    except WireError as exc:
        where = f"{record.topic}/{record.partition}@{record.offset}"
        log.error("undecodable record %s dropped: %s", where, exc)
        return None


def _deliver_messages(services: Services, envelopes: list[MessageEnvelope], outbox: Outbox) -> None:
    requests = [SeqRequest(e.conversation_id, e.dedup_key, e.msg_id, e.ts) for e in envelopes]
    assignments = sequences.assign(services, requests)
    rows: list[PendingRow] = []
    fanouts: list[tuple[MessageEnvelope, MsgFrame, list[str]]] = []
    for envelope, assigned in zip(envelopes, assignments, strict=True):
        outbox.ack(envelope.gateway, envelope.conn, ack_frame(envelope, assigned))
        if assigned.duplicate and assigned.msg_id != envelope.msg_id:
            continue  # a resend of a message already accepted: ack only
        recipients = _recipients(services, envelope)
        rows += pending_rows(envelope, assigned, recipients)
        fanouts.append((envelope, msg_frame(envelope, assigned), recipients))
    # Stored here, before any push, rather than in a Celery task: a recipient
    # who connects between the push and a task's insert would miss the message
    # (not routed yet for the push, not stored yet for the pending fetch).
    # A replayed batch (all duplicates) is not counted twice in the stats.
    fresh = [e for e, a in zip(envelopes, assignments, strict=True) if not a.duplicate]
    _store(services, rows, fresh)
    for envelope, frame, recipients in fanouts:
        outbox.push_message(frame, [*recipients, envelope.sender], envelope.conn)
        trace = {"msg_id": frame.msg_id, "conversation_id": frame.conversation_id}
        log.debug("assigned seq %d, stored for %d, pushed", frame.seq, len(recipients), extra=trace)


def _store(services: Services, rows: list[PendingRow], fresh: list[MessageEnvelope]) -> None:
    """Pending rows in bounded transactions; the daily counters ride on the
    last one: one commit per batch, and a batch rolled back is counted zero
    times. Insert-ignore makes a transaction tried again store nothing twice."""
    chunks = [rows[start : start + CHUNK] for start in range(0, len(rows), CHUNK)] or [[]]
    for chunk in chunks[:-1]:
        store_pending(services, chunk)

    def last() -> None:
        with services.db.session() as session:
            pending_store.store(session, chunks[-1])
            stats.record_messages(session, fresh)

    db.retry_lock_conflicts(last)
    metrics.PENDING_STORED.inc(len(rows))


def _recipients(services: Services, envelope: MessageEnvelope) -> list[str]:
    """Everyone but the sender who gets the message."""
    if envelope.group is not None:
        members = groups.member_ids(services, envelope.group) or []
        return [m for m in members if m != envelope.sender]
    return [envelope.to] if envelope.to and envelope.to != envelope.sender else []


def ack_frame(envelope: MessageEnvelope, assigned: SeqAssignment) -> AckFrame:
    return AckFrame(
        envelope.cid, assigned.msg_id, envelope.conversation_id, assigned.seq, assigned.ts
    )


def msg_frame(envelope: MessageEnvelope, assigned: SeqAssignment) -> MsgFrame:
    return MsgFrame(
        msg_id=assigned.msg_id,
        conversation_id=envelope.conversation_id,
        seq=assigned.seq,
        sender=envelope.sender,
        body=envelope.body,
        ts=assigned.ts,
        to=envelope.to,
        group=envelope.group,
    )


def _announce_membership_change(change: MembershipChange, outbox: Outbox) -> None:
    """An ``event`` frame to every member after the change, and to the member concerned."""
    frame = EventFrame(
        change.event, change.group_id, change.user_id, change.role, change.actor_id, change.ts
    )
    audience = list(dict.fromkeys([*change.member_ids, change.user_id]))
    outbox.push_frame(frame.to_dict(), audience)
