"""The transactional outbox's rows: bus records waiting to be published."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from imchat.stores.models import OutboxEvent

Record = tuple[str, str, bytes]  # topic, key, value: what Bus.publish_many takes


def add(session: Session, records: Sequence[Record], now_ms: int) -> None:
    """In the caller's transaction: the records announcing its change."""
    session.add_all(
        OutboxEvent(topic=t, key=k, value=v.decode(), created_ms=now_ms) for t, k, v in records
    )


def of_key(session: Session, key: str) -> list[tuple[int, Record]]:
    """The key's waiting records, oldest first (their order is the bus's order)."""
    query = select(OutboxEvent).where(OutboxEvent.key == key).order_by(OutboxEvent.event_id)
    return [(e.event_id, (e.topic, e.key, e.value.encode())) for e in session.scalars(query)]


def keys_waiting_since(session: Session, before_ms: int, limit: int = 100) -> list[str]:
    """Keys with a record older than ``before_ms``: the ones a relay must publish."""
    query = (
        select(OutboxEvent.key)
        .where(OutboxEvent.created_ms < before_ms)
        .group_by(OutboxEvent.key)
        .limit(limit)
    )
    return list(session.scalars(query))


def remove(session: Session, event_ids: Sequence[int]) -> None:
    if event_ids:
        session.execute(delete(OutboxEvent).where(OutboxEvent.event_id.in_(event_ids)))
