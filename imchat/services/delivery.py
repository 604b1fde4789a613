"""The bus consumer's work on one batch: seqs, pending rows, pushes, acks.

Order matters for the guarantees: seqs are assigned in bus order (one
partition per conversation), pending rows are made durable (or handed to
Celery) before anything is pushed, and the caller commits the bus offsets
only after this returns. A batch replayed after a crash gets the same seqs
back (``assign`` is idempotent per sender client id) and stores nothing twice.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from imchat import db, metrics
from imchat.backends.base import BusRecord, SeqAssignment, SeqRequest
from imchat.container import Services
from imchat.services import groups, maintenance, sequences
from imchat.services.pending import CHUNK, store_pending
from imchat.stores import pending as pending_store
from imchat.topics import MEMBERSHIP_CHANGE

log = logging.getLogger("imchat.delivery")


@dataclass
class Outbox:
    """What each gateway is sent for one batch, in order."""

    payloads: defaultdict[str, dict[str, list[Any]]] = field(
        default_factory=lambda: defaultdict(lambda: {"acks": [], "msgs": [], "events": []})
    )

    def ack(self, gateway_id: str, conn_id: str, frame: dict[str, Any]) -> None:
        self.payloads[gateway_id]["acks"].append([conn_id, frame])

    def push(
        self,
        services: Services,
        kind: str,
        frame: dict[str, Any],
        users: Sequence[str],
        exclude_conn: str | None = None,
    ) -> None:
        by_gateway: defaultdict[str, list[str]] = defaultdict(list)
        metrics.ROUTE_LOOKUPS.inc(len(users))
        for user_id in users:
            for gateway_id in services.router.gateways_for(user_id):
                by_gateway[gateway_id].append(user_id)
        for gateway_id, local_users in by_gateway.items():
            self.payloads[gateway_id][kind].append([frame, local_users, exclude_conn])

    def send(self, services: Services) -> None:
        services.channel.send_many(
            [(gw, json.dumps(payload).encode()) for gw, payload in self.payloads.items()]
        )


def process_records(services: Services, records: Sequence[BusRecord]) -> None:
    """Handle one polled batch of message and membership records."""
    outbox = Outbox()
    envelopes = [e for e in (_decode(r) for r in records if r.topic != MEMBERSHIP_CHANGE.name) if e]
    if envelopes:
        _deliver_messages(services, envelopes, outbox)
    for record in records:
        if record.topic == MEMBERSHIP_CHANGE.name:
            _announce_membership_change(services, record, outbox)
    outbox.send(services)


def _decode(record: BusRecord) -> dict[str, Any] | None:
    try:
        envelope: dict[str, Any] = json.loads(record.value)
        return envelope
    except ValueError:
        log.error(
            "undecodable record %s/%d@%d dropped", record.topic, record.partition, record.offset
        )
        return None


def _deliver_messages(services: Services, envelopes: list[dict[str, Any]], outbox: Outbox) -> None:
    requests = [
        SeqRequest(e["conversation_id"], f"{e['from']}:{e['cid']}", e["msg_id"], e["ts"])
        for e in envelopes
    ]
    assignments = sequences.assign(services, requests)
    rows: list[dict[str, Any]] = []
    fanouts: list[tuple[dict[str, Any], dict[str, Any], list[str]]] = []
    for envelope, assigned in zip(envelopes, assignments, strict=True):
        outbox.ack(envelope["gateway"], envelope["conn"], _ack_frame(envelope, assigned))
        if assigned.duplicate and assigned.msg_id != envelope["msg_id"]:
            continue  # a resend of a message already accepted: ack only
        recipients = _recipients(services, envelope)
        frame = _msg_frame(envelope, assigned)
        rows += _pending_rows(envelope, assigned, recipients)
        fanouts.append((envelope, frame, recipients))
    # Stored here, before any push, rather than in a Celery task: a recipient
    # who connects between the push and a task's insert would miss the message
    # (not routed yet for the push, not stored yet for the pending fetch).
    # A replayed batch (all duplicates) is not counted twice in the stats.
    fresh = [e for e, a in zip(envelopes, assignments, strict=True) if not a.duplicate]
    _store(services, rows, fresh)
    for envelope, frame, recipients in fanouts:
        outbox.push(services, "msgs", frame, [*recipients, envelope["from"]], envelope["conn"])
        log.debug(
            "assigned seq %d, stored for %d, pushed",
            frame["seq"],
            len(recipients),
            extra={"msg_id": frame["msg_id"], "conversation_id": frame["conversation_id"]},
        )


def _store(services: Services, rows: list[dict[str, Any]], fresh: list[dict[str, Any]]) -> None:
    """Pending rows in bounded transactions; the daily counters ride on the
    last one: one commit per batch, and a batch rolled back is counted zero
    times. Insert-ignore makes a transaction tried again store nothing twice."""
    chunks = [rows[start : start + CHUNK] for start in range(0, len(rows), CHUNK)] or [[]]
    for chunk in chunks[:-1]:
        store_pending(services, chunk)

    def last() -> None:
        with services.db.session() as session:
            pending_store.store(session, chunks[-1])
            maintenance.record_messages(session, fresh)

    db.retry_lock_conflicts(last)
    metrics.PENDING_STORED.inc(len(rows))


def _recipients(services: Services, envelope: dict[str, Any]) -> list[str]:
    """Everyone but the sender who gets the message."""
    if "group" in envelope:
        members = groups.member_ids(services, envelope["group"]) or []
        return [m for m in members if m != envelope["from"]]
    return [envelope["to"]] if envelope["to"] != envelope["from"] else []


def _ack_frame(envelope: dict[str, Any], assigned: SeqAssignment) -> dict[str, Any]:
    return {
        "type": "ack",
        "id": envelope["cid"],
        "msg_id": assigned.msg_id,
        "conversation_id": envelope["conversation_id"],
        "seq": assigned.seq,
        "ts": assigned.ts,
    }


def _msg_frame(envelope: dict[str, Any], assigned: SeqAssignment) -> dict[str, Any]:
    frame = {
        "type": "msg",
        "msg_id": assigned.msg_id,
        "conversation_id": envelope["conversation_id"],
        "seq": assigned.seq,
        "from": envelope["from"],
        "body": envelope["body"],
        "ts": assigned.ts,
    }
    if "group" in envelope:
        frame["group"] = envelope["group"]
    else:
        frame["to"] = envelope["to"]
    return frame


def _pending_rows(
    envelope: dict[str, Any], assigned: SeqAssignment, recipients: list[str]
) -> list[dict[str, Any]]:
    return [
        {
            "user_id": user_id,
            "msg_id": assigned.msg_id,
            "conversation_id": envelope["conversation_id"],
            "sequence_number": assigned.seq,
            "sender_id": envelope["from"],
            "group_id": envelope.get("group"),
            "body": envelope["body"],
            "timestamp": assigned.ts,
        }
        for user_id in recipients
    ]


def _announce_membership_change(services: Services, record: BusRecord, outbox: Outbox) -> None:
    """An ``event`` frame to every member after the change, and to the member concerned."""
    change = _decode(record)
    if change is None:
        return
    frame = {
        "type": "event",
        "event": change["event"],
        "group": change["group_id"],
        "user_id": change["user_id"],
        "role": change.get("role"),
        "actor_id": change.get("actor_id"),
        "ts": change.get("ts"),
    }
    audience = list(dict.fromkeys([*change.get("member_ids", []), change["user_id"]]))
    outbox.push(services, "events", frame, audience)
