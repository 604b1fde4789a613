"""Alembic migrations on SQLite and on MariaDB: up, down, sample data, drift checks."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from argon2 import PasswordHasher
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from imchat.config import Settings
from imchat.ops import migrate

INITIAL = "0001_initial_schema"
SAMPLE = "0002_sample_data"
MARKS = "0003_delivery_marks"
STATS = "0004_daily_stats"
HEAD = STATS
INITIAL_TABLES = {"users", "groups", "group_members", "offline_messages", "sequence_snapshots"}
MARKS_TABLES = INITIAL_TABLES | {"delivery_marks"}
TABLES = MARKS_TABLES | {"daily_stats", "active_users_daily"}
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def sqlite_settings(settings: Settings, tmp_path: Path) -> Settings:
    """Embedded settings whose data dir does not exist yet and has a '%' in its path."""
    return settings.replace(data_dir=str(tmp_path / "data 100%" / "var"))


@pytest.fixture
def mariadb_settings(mysql_url: str, settings: Settings) -> Iterator[Settings]:
    """A database of its own on the test MariaDB server, dropped afterwards."""
    server = make_url(mysql_url)
    name = f"imchat_mig_{uuid.uuid4().hex[:12]}"
    admin = create_engine(server.set(database=None), poolclass=NullPool)
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4"))
    try:
        url = server.set(database=name).render_as_string(hide_password=False)
        yield settings.replace(database_url=url)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS `{name}`"))
        admin.dispose()


@pytest.fixture(
    params=[
        pytest.param("sqlite", marks=pytest.mark.unit),
        pytest.param("mariadb", marks=pytest.mark.integration),
    ]
)
def db(request: pytest.FixtureRequest) -> Settings:
    """Settings pointing at an empty database, once per kind of database."""
    settings: Settings = request.getfixturevalue(f"{request.param}_settings")
    return settings


def table_names(settings: Settings) -> set[str]:
    engine = create_engine(settings.effective_database_url, poolclass=NullPool)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def query(settings: Settings, sql: str, **params: Any) -> list[Any]:
    engine = create_engine(settings.effective_database_url, poolclass=NullPool)
    try:
        with engine.begin() as conn:
            result = conn.execute(text(sql), params)
            return list(result) if result.returns_rows else []
    finally:
        engine.dispose()


@pytest.mark.unit
def test_history_lists_the_revisions_oldest_first() -> None:
    assert migrate.history() == [INITIAL, SAMPLE, MARKS, STATS]
    assert migrate.head() == HEAD


def test_upgrade_check_downgrade_to_base_and_upgrade_again(db: Settings) -> None:
    migrate.upgrade(db)

    assert table_names(db) == TABLES | {"alembic_version"}
    assert migrate.status(db) == {"current": HEAD, "head": HEAD, "pending": []}
    assert migrate.check(db) == []

    migrate.downgrade(db, "base")
    assert table_names(db) <= {"alembic_version"}
    assert migrate.current(db) is None

    migrate.upgrade(db)
    assert table_names(db) == TABLES | {"alembic_version"}
    assert migrate.check(db) == []


def test_downgrade_one_step_at_a_time(db: Settings) -> None:
    migrate.upgrade(db)

    migrate.downgrade(db)
    assert migrate.status(db) == {"current": MARKS, "head": HEAD, "pending": [STATS]}
    assert table_names(db) == MARKS_TABLES | {"alembic_version"}

    migrate.downgrade(db)
    assert migrate.status(db) == {"current": SAMPLE, "head": HEAD, "pending": [MARKS, STATS]}
    assert table_names(db) == INITIAL_TABLES | {"alembic_version"}

    migrate.downgrade(db)
    assert migrate.status(db) == {
        "current": INITIAL,
        "head": HEAD,
        "pending": [SAMPLE, MARKS, STATS],
    }
    assert table_names(db) == INITIAL_TABLES | {"alembic_version"}

    migrate.downgrade(db)
    assert migrate.current(db) is None
    assert table_names(db) <= {"alembic_version"}
    assert migrate.status(db)["pending"] == [INITIAL, SAMPLE, MARKS, STATS]


@pytest.mark.unit
def test_upgrade_creates_the_sqlite_files_directory(sqlite_settings: Settings) -> None:
    assert not sqlite_settings.data_path.exists()
    migrate.upgrade(sqlite_settings)
    assert (sqlite_settings.data_path / "imchat.sqlite3").is_file()


@pytest.mark.unit
def test_reading_a_missing_sqlite_database_creates_nothing(sqlite_settings: Settings) -> None:
    assert migrate.current(sqlite_settings) is None
    assert migrate.status(sqlite_settings)["pending"] == [INITIAL, SAMPLE, MARKS, STATS]
    assert "does not exist" in migrate.check(sqlite_settings)[0]
    assert not sqlite_settings.data_path.exists()


def test_no_sample_data_by_default(db: Settings) -> None:
    migrate.upgrade(db)
    assert migrate.current(db) == HEAD
    for table in ("users", "`groups`" if _is_mysql(db) else '"groups"', "group_members"):
        assert query(db, f"SELECT COUNT(*) FROM {table}")[0][0] == 0


def test_sample_data_when_asked_and_gone_after_its_downgrade(db: Settings) -> None:
    migrate.upgrade(db, sample_data=True)

    users = dict(query(db, "SELECT username, password_hash FROM users"))
    assert set(users) == {"alice", "bob", "charlie"}
    for password_hash in users.values():
        assert PasswordHasher().verify(password_hash, migrate.SAMPLE_PASSWORD)
    groups = _groups(db)
    assert [(g.name, g.owner, g.member_count) for g in groups] == [("test-group", "alice", 3)]
    members = query(
        db,
        "SELECT u.username, m.role FROM group_members m JOIN users u ON u.user_id = m.user_id",
    )
    assert sorted(members) == [("alice", "owner"), ("bob", "member"), ("charlie", "member")]

    # A user registered through the app is not sample data: the downgrade keeps it.
    query(
        db,
        "INSERT INTO users (user_id, username, password_hash) VALUES ('d1', 'dave', 'x')",
    )
    migrate.downgrade(db, INITIAL)
    assert migrate.current(db) == INITIAL
    assert [row.username for row in query(db, "SELECT username FROM users")] == ["dave"]
    assert _groups(db) == []
    assert query(db, "SELECT COUNT(*) FROM group_members")[0][0] == 0


def test_check_reports_a_dropped_index(db: Settings) -> None:
    migrate.upgrade(db)
    on_table = " ON offline_messages" if _is_mysql(db) else ""
    query(db, f"DROP INDEX ix_offline_messages_timestamp{on_table}")

    differences = migrate.check(db)

    assert len(differences) == 1
    assert "add_index" in differences[0]
    assert "ix_offline_messages_timestamp" in differences[0]


def test_check_reports_a_changed_column(db: Settings) -> None:
    migrate.upgrade(db)
    query(db, "ALTER TABLE sequence_snapshots ADD COLUMN note VARCHAR(10)")

    assert migrate.check(db) == ["remove_column sequence_snapshots.note [database only]"]


def test_check_reports_a_database_behind_head(db: Settings) -> None:
    migrate.upgrade(db, INITIAL)

    differences = migrate.check(db)

    assert f"pending: {SAMPLE}, {MARKS}, {STATS}" in differences[0]
    # The tables of the pending revisions are missing, and named.
    assert sorted(differences[1:]) == [
        "add_table Table active_users_daily [models only]",
        "add_table Table daily_stats [models only]",
        "add_table Table delivery_marks [models only]",
    ]


@pytest.mark.unit
def test_check_reports_a_revision_this_code_does_not_know(sqlite_settings: Settings) -> None:
    migrate.upgrade(sqlite_settings)
    query(sqlite_settings, "UPDATE alembic_version SET version_num = '0099_from_the_future'")

    assert migrate.check(sqlite_settings) == [
        f"database is at revision 0099_from_the_future, unknown to this code (head {HEAD})"
    ]


@pytest.mark.unit
def test_asking_for_sample_data_after_its_revision_warns(
    sqlite_settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    migrate.upgrade(sqlite_settings)

    migrate.upgrade(sqlite_settings, sample_data=True)

    assert "sample data not added" in caplog.text
    assert query(sqlite_settings, "SELECT COUNT(*) FROM users")[0][0] == 0


@pytest.mark.integration
def test_offline_messages_has_16_key_partitions_on_mariadb(mariadb_settings: Settings) -> None:
    migrate.upgrade(mariadb_settings)
    partitions_sql = (
        "SELECT PARTITION_METHOD, PARTITION_EXPRESSION FROM information_schema.PARTITIONS"
        " WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'offline_messages'"
    )

    partitions = query(mariadb_settings, partitions_sql)
    assert len(partitions) == 16
    assert {(method, expr.strip("`")) for method, expr in partitions} == {("KEY", "user_id")}

    # Alembic's comparison ignores partitioning; check() looks at it itself.
    query(mariadb_settings, "ALTER TABLE offline_messages REMOVE PARTITIONING")
    assert migrate.check(mariadb_settings) == [
        "partitioning of offline_messages: database not partitioned, "
        "models KEY(user_id) PARTITIONS 16"
    ]


@pytest.mark.unit
def test_alembic_cli_uses_imchat_settings_and_the_sample_data_flag(
    sqlite_settings: Settings, tmp_path: Path
) -> None:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("IMCHAT_")}
    environ["IMCHAT_DATA_DIR"] = sqlite_settings.data_dir
    alembic = [sys.executable, "-m", "alembic", "-c", str(REPO / "alembic.ini")]

    subprocess.run(
        [*alembic, "-x", "sample_data=true", "upgrade", "head"],
        cwd=tmp_path,  # away from the repository: alembic.ini must find everything itself
        env=environ,
        check=True,
        capture_output=True,
        timeout=60,
    )

    assert migrate.current(sqlite_settings) == HEAD
    assert query(sqlite_settings, "SELECT COUNT(*) FROM users")[0][0] == 3


def _is_mysql(settings: Settings) -> bool:
    return make_url(settings.effective_database_url).get_backend_name() in ("mysql", "mariadb")


def _groups(settings: Settings) -> list[Any]:
    table = "`groups`" if _is_mysql(settings) else '"groups"'
    return query(
        settings,
        "SELECT g.name, u.username AS owner, g.member_count"
        f" FROM {table} g JOIN users u ON u.user_id = g.owner_id",
    )
