"""Pending messages: stored for each recipient until they confirm delivery."""

from __future__ import annotations

from typing import Any

from imchat import metrics
from imchat.container import Services
from imchat.services.jobs import job
from imchat.stores import pending as pending_store

CONFIRM_DELIVERED = "imchat.confirm_delivered"
# Rows per job: keeps one task (and one INSERT) bounded for large groups.
CHUNK = 1000


def store_pending(services: Services, rows: list[dict[str, Any]]) -> None:
    """Idempotent: a row already stored for (user, msg_id) is left alone."""
    with services.db.session() as session:
        pending_store.store(session, rows)


@job(CONFIRM_DELIVERED)
def confirm_delivered(services: Services, marks: list[list[Any]]) -> None:
    """``marks`` are [user_id, conversation_id, seq] triples from ``delivered`` frames."""
    with services.db.session() as session:
        for user_id, conversation_id, seq in marks:
            pending_store.confirm(session, str(user_id), str(conversation_id), int(seq))
    metrics.PENDING_CONFIRMED.inc(len(marks))


def load_pending(services: Services, user_id: str, limit: int = 100_000) -> list[dict[str, Any]]:
    """The user's pending messages as ``msg`` frames, in seq order per conversation."""
    with services.db.session() as session:
        rows = pending_store.for_user(session, user_id, limit)
        return [
            msg_frame_from_row(
                r.msg_id,
                r.conversation_id,
                r.sequence_number,
                r.sender_id,
                r.group_id,
                r.user_id,
                r.body,
                r.timestamp,
            )
            for r in rows
        ]


def msg_frame_from_row(
    msg_id: str,
    conversation_id: str,
    seq: int,
    sender_id: str,
    group_id: str | None,
    recipient_id: str,
    body: str,
    ts: int,
) -> dict[str, Any]:
    frame: dict[str, Any] = {
        "type": "msg",
        "msg_id": msg_id,
        "conversation_id": conversation_id,
        "seq": seq,
        "from": sender_id,
        "body": body,
        "ts": ts,
    }
    if group_id:
        frame["group"] = group_id
    else:
        frame["to"] = recipient_id
    return frame
