"""Schema migrations (Alembic), as a small API for the CLI and for start-up.

The revisions live in ``<repo>/migrations/versions``: ``0001_initial_schema``
creates the tables of :mod:`imchat.stores.models`; ``0002_sample_data`` adds the
seed's sample data (users alice, bob and charlie, password ``password123``,
and their group "test-group") only when asked with ``sample_data=True`` or
``alembic -x sample_data=true upgrade head`` (the seed's Liquibase "test"
context). Without the flag 0002 is recorded as applied but inserts nothing:
to add the sample data later, ``downgrade(settings, "0001_initial_schema")``
then ``upgrade(settings, sample_data=True)``.

The database is always ``settings.effective_database_url``: the embedded
SQLite file, or ``IMCHAT_DATABASE_URL``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.script.revision import RevisionError
from sqlalchemy import Connection, Engine, Table, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from imchat.config import Settings

log = logging.getLogger("imchat.ops.migrate")

# Found next to the package, so it works from any working directory.
MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"
# The key under Config.attributes that 0002_sample_data reads.
SAMPLE_DATA = "sample_data"
SAMPLE_PASSWORD = "password123"
INITIAL_REVISION = "0001_initial_schema"
SAMPLE_REVISION = "0002_sample_data"
MYSQL_DIALECTS = ("mysql", "mariadb")


def _escape(value: str) -> str:
    """Escape ``%`` for configparser interpolation (URL-encoded passwords, odd paths)."""
    return value.replace("%", "%%")


def alembic_config(settings: Settings, *, sample_data: bool = False) -> Config:
    """An Alembic Config built in code: no alembic.ini needed, URL from settings."""
    config = Config()
    config.set_main_option("script_location", _escape(str(MIGRATIONS_DIR)))
    config.set_main_option("sqlalchemy.url", _escape(settings.effective_database_url))
    config.attributes[SAMPLE_DATA] = sample_data
    return config


def context_options(dialect_name: str) -> dict[str, Any]:
    """Options shared by migrations/env.py and :func:`check`, so both see the same schema."""
    return {
        "compare_type": True,
        # SQLite cannot ALTER most things: batch mode copies the table instead.
        "render_as_batch": dialect_name == "sqlite",
        # MySQL DDL is not transactional: stamp each revision as soon as it is done.
        "transaction_per_migration": True,
    }


def _sqlite_file(url: str) -> Path | None:
    """The file of an SQLite URL; None for other databases and in-memory SQLite."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database)


def migration_engine(url: str) -> Engine:
    """An engine for one migration run: no pool; an SQLite file's directory is created.

    No SQLite ``foreign_keys`` pragma here, unlike the app: batch mode recreates
    tables, and dropping the old copy would fire ON DELETE CASCADE.
    """
    sqlite_file = _sqlite_file(url)
    if sqlite_file is not None:
        sqlite_file.parent.mkdir(parents=True, exist_ok=True)
    return create_engine(url, poolclass=NullPool)


def _missing_sqlite_file(settings: Settings) -> Path | None:
    """The SQLite file when it does not exist yet (reading must not create it)."""
    sqlite_file = _sqlite_file(settings.effective_database_url)
    if sqlite_file is not None and not sqlite_file.exists():
        return sqlite_file
    return None


def upgrade(settings: Settings, revision: str = "head", sample_data: bool = False) -> None:
    """Apply the migrations up to ``revision``; ``sample_data`` enables 0002's rows."""
    if sample_data and SAMPLE_REVISION not in pending(current(settings)):
        log.warning(
            "sample data not added: %s is already applied (downgrade to %s first)",
            SAMPLE_REVISION,
            INITIAL_REVISION,
        )
    command.upgrade(alembic_config(settings, sample_data=sample_data), revision)


def downgrade(settings: Settings, revision: str = "-1") -> None:
    """Revert migrations down to ``revision`` ("-1": one step, "base": everything)."""
    command.downgrade(alembic_config(settings), revision)


def current(settings: Settings) -> str | None:
    """The database's revision, None when it has none (or the SQLite file does not exist)."""
    if _missing_sqlite_file(settings):
        return None
    engine = migration_engine(settings.effective_database_url)
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()


def _scripts() -> ScriptDirectory:
    config = Config()
    config.set_main_option("script_location", _escape(str(MIGRATIONS_DIR)))
    return ScriptDirectory.from_config(config)


def history() -> list[str]:
    """Every revision id, oldest first."""
    return [script.revision for script in reversed(list(_scripts().walk_revisions()))]


def head() -> str | None:
    """The newest revision id."""
    return _scripts().get_current_head()


def pending(current_revision: str | None) -> list[str]:
    """The revisions an upgrade to head would apply after ``current_revision``, oldest first."""
    scripts = _scripts().iterate_revisions("heads", current_revision or "base")
    return [script.revision for script in reversed(list(scripts))]


def status(settings: Settings) -> dict[str, Any]:
    """``{"current": rev | None, "head": rev, "pending": [rev, ...]}``."""
    current_revision = current(settings)
    return {
        "current": current_revision,
        "head": head(),
        "pending": pending(current_revision),
    }


def check(settings: Settings) -> list[str]:
    """Differences between the models and the database, one line each; empty when they agree.

    Meant for a database migrated to head: a database behind head is reported as
    such, followed by the schema differences it still has.
    """
    missing = _missing_sqlite_file(settings)
    if missing:
        return [f"database file {missing} does not exist: run the migrations"]
    from imchat.stores.models import Base

    engine = migration_engine(settings.effective_database_url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts=context_options(conn.dialect.name))
            problems = _revision_problems(context.get_current_revision())
            problems += [_describe(diff) for diff in compare_metadata(context, Base.metadata)]
            if conn.dialect.name in MYSQL_DIALECTS:
                problems += _partition_problems(conn, Base.metadata.tables.values())
            return problems
    finally:
        engine.dispose()


def _revision_problems(current_revision: str | None) -> list[str]:
    newest = head()
    if current_revision == newest:
        return []
    try:
        missing = ", ".join(pending(current_revision))
    except RevisionError:  # e.g. a database migrated by newer code
        return [f"database is at revision {current_revision}, unknown to this code (head {newest})"]
    return [
        f"database is at revision {current_revision or 'base'}, head is {newest} "
        f"(pending: {missing})"
    ]


def _partition_problems(conn: Connection, tables: Iterable[Table]) -> list[str]:
    """Partitioning drift on MySQL, which Alembic's comparison does not look at."""
    problems: list[str] = []
    for table in tables:
        options = table.dialect_options["mysql"]
        if not options.get("partition_by"):
            continue
        wanted = _normal_partitioning(options["partition_by"], options.get("partitions"))
        found = _found_partitioning(conn, table.name)
        # A missing table is already reported by compare_metadata.
        if found is not None and found != wanted:
            problems.append(f"partitioning of {table.name}: database {found}, models {wanted}")
    return problems


def _normal_partitioning(partition_by: str, partitions: Any) -> str:
    # Column names are case-insensitive in MySQL; the method is upper case in information_schema.
    method, _, expression = partition_by.replace("`", "").replace(" ", "").partition("(")
    clause = f"{method.upper()}({expression.lower()}"
    return f"{clause} PARTITIONS {int(partitions)}" if partitions else clause


def _found_partitioning(conn: Connection, table_name: str) -> str | None:
    rows = conn.execute(
        text(
            "SELECT PARTITION_NAME, PARTITION_METHOD, PARTITION_EXPRESSION"
            " FROM information_schema.PARTITIONS"
            " WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = :table"
        ),
        {"table": table_name},
    ).all()
    if not rows:
        return None
    if rows[0].PARTITION_NAME is None:
        return "not partitioned"
    by = f"{rows[0].PARTITION_METHOD}({rows[0].PARTITION_EXPRESSION or ''})"
    return _normal_partitioning(by, len(rows))


def _describe(diff: Any) -> str:
    """One line for an entry of compare_metadata's result."""
    if isinstance(diff, list):  # the modify_* changes of one column come grouped
        return "; ".join(_describe(change) for change in diff)
    operation, *items = diff
    if operation.startswith("modify_"):
        _schema, table_name, column_name, _info, old, new = items
        return f"{operation} {table_name}.{column_name}: database {old!r}, models {new!r}"
    # Alembic's verbs say what a new revision would do: add what only the models have.
    side = {"add": " [models only]", "remove": " [database only]"}.get(operation.split("_")[0], "")
    if operation in ("add_column", "remove_column"):
        _schema, table_name, column = items
        return f"{operation} {table_name}.{column.name}{side}"
    return " ".join([operation, *(_name(item) for item in items if item is not None)]) + side


def _name(item: Any) -> str:
    """A schema object as 'kind name on table(columns)'."""
    if isinstance(item, str):
        return item
    kind = type(item).__name__
    table = getattr(item, "table", None)
    where = f" on {table.name}" if table is not None else ""
    columns = getattr(item, "columns", None)
    listed = f"({', '.join(c.name for c in columns)})" if columns is not None and where else ""
    return f"{kind} {item.name}{where}{listed}"


__all__ = [
    "MIGRATIONS_DIR",
    "SAMPLE_PASSWORD",
    "alembic_config",
    "check",
    "current",
    "downgrade",
    "head",
    "history",
    "pending",
    "status",
    "upgrade",
]
