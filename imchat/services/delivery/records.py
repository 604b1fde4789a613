"""The bus consumer's work on one batch: seqs, pending rows, pushes, acks.

Order matters for the guarantees: seqs are assigned in bus order (one
partition per conversation), messages are stored in history before anything
is pushed, and the caller commits the bus offsets only after this returns.
A batch replayed after a crash gets the same seqs back (history and the
sequence store both know each sender's client ids) and stores nothing twice.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from imchat import metrics
from imchat.backends.base import BusRecord, SeqRequest
from imchat.services import groups, sequences, stats
from imchat.services.delivery.changes import deliver_changes
from imchat.services.delivery.outbox import Outbox
from imchat.stores import conversations as conversation_store
from imchat.stores import db, history
from imchat.wire.bus import (
    MembershipChange,
    MessageChange,
    MessageEnvelope,
    decode_message_record,
)
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
    decoded = [_decode_message(r) for r in records if r.topic != MEMBERSHIP_CHANGE.name]
    envelopes = [e for e in decoded if isinstance(e, MessageEnvelope)]
    if envelopes:
        _deliver_messages(services, envelopes, outbox)
    # After the batch's messages: a change follows its message on the bus, and
    # the gateway only accepts a change of a message already in history.
    changes = [c for c in decoded if isinstance(c, MessageChange)]
    if changes:
        deliver_changes(services, changes, outbox)
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
        _dropped(record, exc)
        return None


def _decode_message(record: BusRecord) -> MessageEnvelope | MessageChange | None:
    try:
        return decode_message_record(record.value)
    except WireError as exc:
        _dropped(record, exc)
        return None


def _dropped(record: BusRecord, exc: WireError) -> None:
    where = f"{record.topic}/{record.partition}@{record.offset}"
    log.error("undecodable record %s dropped: %s", where, exc)


@dataclass(frozen=True)
class Accepted:
    """A message of the batch with its seq: to store and push, or to ack only."""

    envelope: MessageEnvelope
    msg_id: str
    seq: int
    ts: int
    # False for a resend of a message already accepted under another msg_id.
    push: bool
    # False when history has it already (a batch replayed after a crash).
    fresh: bool


def _deliver_messages(services: Services, envelopes: list[MessageEnvelope], outbox: Outbox) -> None:
    accepted = _assign(services, envelopes)
    for item in accepted:
        outbox.ack(item.envelope.gateway, item.envelope.conn, ack_frame(item))
    pushed = [a for a in accepted if a.push]
    # Stored here, before any push, rather than in a Celery task: a recipient
    # who connects between the push and a task's insert would miss the message
    # (not routed yet for the push, not in history yet for the pending fetch).
    _store(services, pushed)
    for item in pushed:
        frame = msg_frame(item)
        recipients = _recipients(services, item.envelope)
        outbox.push_message(frame, [*recipients, item.envelope.sender], item.envelope.conn)
        trace = {"msg_id": frame.msg_id, "conversation_id": frame.conversation_id}
        log.debug(
            "assigned seq %d, in history, pushed to %d", frame.seq, len(recipients), extra=trace
        )


def _assign(services: Services, envelopes: list[MessageEnvelope]) -> list[Accepted]:
    """Each message's seq: from history when it is stored already (a resend, even
    after the loss of Redis, or a replayed batch), else from the sequence store."""
    with services.db.session() as session:
        stored = history.sent_before(session, [_sent_key(e) for e in envelopes])
    unseen = [e for e in envelopes if _sent_key(e) not in stored]
    requests = [SeqRequest(e.conversation_id, e.dedup_key, e.msg_id, e.ts) for e in unseen]
    assigned = dict(zip(map(id, unseen), sequences.assign(services, requests), strict=True))
    accepted = []
    for envelope in envelopes:
        earlier = stored.get(_sent_key(envelope))
        if earlier is not None:
            same = earlier.msg_id == envelope.msg_id
            item = Accepted(envelope, earlier.msg_id, earlier.seq, earlier.ts, same, False)
        else:
            seq = assigned[id(envelope)]
            resend = seq.duplicate and seq.msg_id != envelope.msg_id
            item = Accepted(envelope, seq.msg_id, seq.seq, seq.ts, not resend, not seq.duplicate)
        accepted.append(item)
    return accepted


def _sent_key(envelope: MessageEnvelope) -> tuple[str, str, str]:
    return envelope.conversation_id, envelope.sender, envelope.cid


def _store(services: Services, accepted: list[Accepted]) -> None:
    """History rows, conversations' last seqs, direct members and the daily
    counters in one transaction: one commit per batch, a batch rolled back is
    counted zero times, and insert-ignore makes a retried one store nothing twice."""
    rows = [_history_row(a) for a in accepted]
    activity: dict[str, conversation_store.Activity] = {}
    for item in accepted:
        e, known = item.envelope, activity.get(item.envelope.conversation_id)
        if known is None or item.seq > known.last_seq:
            activity[e.conversation_id] = conversation_store.Activity(
                e.kind, e.group, item.seq, item.ts
            )
    direct = [
        (a.envelope.conversation_id, a.envelope.sender, a.envelope.to)
        for a in accepted
        if a.envelope.to is not None
    ]

    def write() -> None:
        with services.db.session() as session:
            history.append(session, rows)
            conversation_store.record_activity(session, activity)
            conversation_store.add_direct_members(session, direct)
            stats.record_messages(session, [a.envelope for a in accepted if a.fresh])

    if accepted:
        db.retry_lock_conflicts(write)
    metrics.HISTORY_STORED.inc(sum(a.fresh for a in accepted))


def _history_row(item: Accepted) -> history.HistoryRow:
    e = item.envelope
    return {
        "conversation_id": e.conversation_id,
        "seq": item.seq,
        "msg_id": item.msg_id,
        "sender_id": e.sender,
        "client_id": e.cid,
        "recipient_id": e.to,
        "group_id": e.group,
        "body": e.body,
        "ts": item.ts,
        "reply_to": e.reply_to,
    }


def _recipients(services: Services, envelope: MessageEnvelope) -> list[str]:
    """Everyone but the sender who gets the message."""
    if envelope.group is not None:
        members = groups.member_ids(services, envelope.group) or []
        return [m for m in members if m != envelope.sender]
    return [envelope.to] if envelope.to and envelope.to != envelope.sender else []


def ack_frame(item: Accepted) -> AckFrame:
    e = item.envelope
    return AckFrame(e.cid, item.msg_id, e.conversation_id, item.seq, item.ts)


def msg_frame(item: Accepted) -> MsgFrame:
    e = item.envelope
    return MsgFrame(
        msg_id=item.msg_id,
        conversation_id=e.conversation_id,
        seq=item.seq,
        sender=e.sender,
        body=e.body,
        ts=item.ts,
        to=e.to,
        group=e.group,
        reply_to=e.reply_to,
    )


def _announce_membership_change(change: MembershipChange, outbox: Outbox) -> None:
    """An ``event`` frame to every member after the change, and to the member concerned."""
    frame = EventFrame(
        change.event, change.group_id, change.user_id, change.role, change.actor_id, change.ts
    )
    audience = list(dict.fromkeys([*change.member_ids, change.user_id]))
    outbox.push_frame(frame.to_dict(), audience)
