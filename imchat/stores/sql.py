"""SQL the stores share across dialects (MySQL/MariaDB in production, SQLite embedded)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Table
from sqlalchemy.dialects.mysql import insert as mysql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session


def is_mysql(session: Session) -> bool:
    return session.get_bind().dialect.name == "mysql"


def insert_ignore(session: Session, table: Table, rows: Sequence[dict[str, Any]]) -> None:
    """Insert ``rows`` in one statement; a row whose key is already there is left as is."""
    if not rows:
        return
    if is_mysql(session):
        session.execute(mysql_insert(table).prefix_with("IGNORE"), rows)
    else:
        session.execute(sqlite_insert(table).on_conflict_do_nothing(), rows)
