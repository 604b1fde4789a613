"""Engine and sessions. A session is short: one per request or per message."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pymysql
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from imchat.config import Settings

log = logging.getLogger("imchat.stores.db")
# MySQL/MariaDB: deadlock found (1213), lock wait timeout (1205).
LOCK_CONFLICTS = frozenset({1205, 1213})
LOCK_CONFLICT_ATTEMPTS = 3


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()


class _PyMySQLConnection(pymysql.connections.Connection):
    """PyMySQL, minus a fresh TLS context (and a read of the system's CA
    certificates, tens of ms) for every new connection: under load the pool's
    overflow connections come and go, and that read took most of a gateway's
    CPU. With TLS options in the URL PyMySQL builds its context as usual."""

    _preferred_tls: Any = None  # PyMySQL's default context, built once per process

    def _create_ssl_ctx(self, sslp: Any) -> Any:
        if sslp != {}:
            return super()._create_ssl_ctx(sslp)
        if _PyMySQLConnection._preferred_tls is None:
            _PyMySQLConnection._preferred_tls = super()._create_ssl_ctx({})
        return _PyMySQLConnection._preferred_tls


def _connect_pymysql(
    dialect: Any, record: Any, cargs: Any, cparams: dict[str, Any]
) -> _PyMySQLConnection:
    return _PyMySQLConnection(*cargs, **cparams)


def make_engine(settings: Settings) -> Engine:
    url = make_url(settings.effective_database_url)
    if url.get_backend_name() == "sqlite":
        if url.database and url.database != ":memory:":
            Path(url.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    engine = create_engine(
        url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_recycle=settings.db_pool_recycle_seconds,
        pool_pre_ping=True,
        pool_timeout=5,
    )
    if url.get_driver_name() == "pymysql":
        event.listen(engine, "do_connect", _connect_pymysql)
    return engine


class Database:
    """The engine plus a session factory."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A unit of work: committed on success, rolled back on error."""
        with self._sessions.begin() as session:
            yield session

    def dispose(self) -> None:
        self.engine.dispose()


def retry_lock_conflicts(transaction: Callable[[], None]) -> None:
    """Run ``transaction`` again when InnoDB picked it as a deadlock victim or
    its lock wait timed out (both roll it back whole); other errors propagate."""
    for attempt in range(1, LOCK_CONFLICT_ATTEMPTS + 1):
        try:
            transaction()
            return
        except DBAPIError as exc:
            code = exc.orig.args[0] if exc.orig is not None and exc.orig.args else None
            if code not in LOCK_CONFLICTS or attempt == LOCK_CONFLICT_ATTEMPTS:
                raise
            log.info("transaction retried after lock conflict %s", code)
