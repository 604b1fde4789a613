"""sequence_snapshots: the durable reservation above every seq handed out."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from sqlalchemy import Table, select, update
from sqlalchemy.orm import Session

from imchat.stores.models import SequenceSnapshot
from imchat.stores.sql import insert_ignore

SNAPSHOTS: Table = SequenceSnapshot.__table__  # type: ignore[assignment]


def reserved(session: Session, conversation_ids: Iterable[str]) -> dict[str, int]:
    """Each conversation's reservation, 0 for a conversation never seen (one query)."""
    ids = sorted(set(conversation_ids))
    found = {cid: 0 for cid in ids}
    if ids:
        query = select(SequenceSnapshot.conversation_id, SequenceSnapshot.sequence_number).where(
            SequenceSnapshot.conversation_id.in_(ids)
        )
        found.update({cid: int(seq) for cid, seq in session.execute(query)})
    return found


def reserve(session: Session, upto: Mapping[str, int]) -> None:
    """Raise each conversation's reservation to its ``upto`` (never lowers one).

    Missing rows are created in one statement; the updates then raise the rows
    that were there (or that another consumer created meanwhile). Sorted, so
    that concurrent consumers lock rows in one order.
    """
    ids = sorted(upto)
    insert_ignore(
        session, SNAPSHOTS, [{"conversation_id": c, "sequence_number": upto[c]} for c in ids]
    )
    for cid in ids:
        session.execute(
            update(SequenceSnapshot)
            .where(
                SequenceSnapshot.conversation_id == cid,
                SequenceSnapshot.sequence_number < upto[cid],
            )
            .values(sequence_number=upto[cid])
        )
