"""Daily statistics and the batched deletes of the maintenance jobs: their SQL.

Every write here is safe with several writers at once: counters are raised
with atomic upserts (``x = x + n`` inside the database, never read-modify-write
in Python), active users are insert-or-ignore, and deletes take bounded
batches so that no transaction holds many row locks for long.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import date
from typing import Any

from sqlalchemy import ColumnElement, Table, delete, func, literal_column, select
from sqlalchemy.dialects.mysql import insert as mysql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from imchat.stores.models import ActiveUserDay, DailyStats
from imchat.stores.sql import insert_ignore, is_mysql

STATS: Table = DailyStats.__table__  # type: ignore[assignment]
ACTIVE: Table = ActiveUserDay.__table__  # type: ignore[assignment]
COUNTERS = ("direct_messages", "group_messages")


def record_activity(
    session: Session, day: date, counts: Mapping[str, int], senders: Iterable[str]
) -> None:
    """Add ``counts`` (direct_messages, group_messages) to the day and note its senders.

    Senders go in first, in a fixed order: concurrent consumers then take the
    same locks in the same order, which keeps InnoDB from deadlocking them.
    """
    active = [{"day": day, "user_id": user_id} for user_id in sorted(set(senders))]
    insert_ignore(session, ACTIVE, active)
    increments = {name: int(counts.get(name, 0)) for name in COUNTERS}
    if any(increments.values()):
        _add_to_counters(session, day, increments)


def _add_to_counters(session: Session, day: date, increments: dict[str, int]) -> None:
    values = {"day": day, "active_users": 0, **increments}
    if is_mysql(session):
        my = mysql_insert(STATS).values(values)
        my_changes: dict[str, Any] = {n: STATS.c[n] + my.inserted[n] for n in increments}
        session.execute(my.on_duplicate_key_update(updated_at=func.now(), **my_changes))
    else:
        lite = sqlite_insert(STATS).values(values)
        lite_changes: dict[str, Any] = {n: STATS.c[n] + lite.excluded[n] for n in increments}
        lite_changes["updated_at"] = func.now()
        session.execute(lite.on_conflict_do_update(index_elements=["day"], set_=lite_changes))


def count_active_users(session: Session, day: date) -> int:
    """Distinct senders noted for ``day``."""
    query = select(func.count()).select_from(ACTIVE).where(ACTIVE.c.day == day)
    return int(session.scalar(query) or 0)


def set_active_users(session: Session, day: date, active_users: int) -> None:
    """Store the day's active-user count; its message counters are left as they are."""
    values = {"day": day, "direct_messages": 0, "group_messages": 0, "active_users": active_users}
    if is_mysql(session):
        my = mysql_insert(STATS).values(values)
        session.execute(
            my.on_duplicate_key_update(active_users=my.inserted.active_users, updated_at=func.now())
        )
    else:
        lite = sqlite_insert(STATS).values(values)
        session.execute(
            lite.on_conflict_do_update(
                index_elements=["day"],
                set_={"active_users": lite.excluded.active_users, "updated_at": func.now()},
            )
        )


def days_between(session: Session, first: date, last: date) -> list[DailyStats]:
    """The stored days from ``first`` to ``last`` included, oldest first."""
    query = (
        select(DailyStats)
        .where(DailyStats.day >= first, DailyStats.day <= last)
        .order_by(DailyStats.day)
    )
    return list(session.scalars(query))


def delete_batch(session: Session, table: Table, condition: ColumnElement[bool], limit: int) -> int:
    """Delete at most ``limit`` rows matching ``condition``; the number deleted.

    MySQL has ``DELETE ... LIMIT``; SQLite (built without that option) gets
    the same through its rowid. Two runs at once are harmless: a row is
    deleted by whichever gets it first, the other skips or waits for it.
    """
    if is_mysql(session):
        statement = delete(table).where(condition).with_dialect_options(mysql_limit=limit)
    else:
        rowid: ColumnElement[Any] = literal_column(f"{table.name}.rowid")
        doomed = select(rowid).where(condition).limit(limit).scalar_subquery()
        statement = delete(table).where(rowid.in_(doomed))
    result = session.execute(statement)
    return int(result.rowcount)  # type: ignore[attr-defined]


def purge_active_users(session: Session, before: date, limit: int) -> int:
    """Delete up to ``limit`` active-user rows of days before ``before``."""
    return delete_batch(session, ACTIVE, ACTIVE.c.day < before, limit)
