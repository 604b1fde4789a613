"""Alembic migrations on SQLite and on MariaDB: up, down, sample data, drift checks."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from argon2 import PasswordHasher
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from imchat.config import Settings
from imchat.container import Services
from imchat.ops import migrate
from imchat.services.pending import load_pending

INITIAL = "0001_initial_schema"
SAMPLE = "0002_sample_data"
MARKS = "0003_delivery_marks"
STATS = "0004_daily_stats"
HISTORY = "0005_history"
BLOCKS = "0006_blocks"
CHANGES = "0007_message_changes"
PRESENCE = "0008_presence"
PUSH = "0009_push_subscriptions"
SESSIONS = "0010_sessions"
OUTBOX = "0011_event_outbox"
HEAD = OUTBOX
REVISIONS = [
    *[INITIAL, SAMPLE, MARKS, STATS, HISTORY, BLOCKS, CHANGES],
    *[PRESENCE, PUSH, SESSIONS, OUTBOX],
]
LATER = [BLOCKS, CHANGES, PRESENCE, PUSH, SESSIONS, OUTBOX]
INITIAL_TABLES = {"users", "groups", "group_members", "offline_messages", "sequence_snapshots"}
MARKS_TABLES = INITIAL_TABLES | {"delivery_marks"}
STATS_TABLES = MARKS_TABLES | {"daily_stats", "active_users_daily"}
# 0005 retires the per-recipient tables for history stored once per conversation.
TABLES = (STATS_TABLES - {"offline_messages", "delivery_marks"}) | {
    "messages",
    "conversations",
    "conversation_members",
    "blocks",
    "message_changes",
    "message_reactions",
    "push_subscriptions",
    "sessions",
    "event_outbox",
}
LATE_TABLES = {"push_subscriptions", "sessions", "event_outbox"}  # 0009 to 0011
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


def column_names(settings: Settings, table: str) -> set[str]:
    engine = create_engine(settings.effective_database_url, poolclass=NullPool)
    try:
        return {column["name"] for column in inspect(engine).get_columns(table)}
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
    assert migrate.history() == REVISIONS
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

    assert "push" in column_names(db, "conversation_members")

    migrate.downgrade(db)
    assert migrate.status(db) == {"current": SESSIONS, "head": HEAD, "pending": [OUTBOX]}
    assert table_names(db) == TABLES - {"event_outbox"} | {"alembic_version"}

    migrate.downgrade(db)
    assert migrate.status(db) == {"current": PUSH, "head": HEAD, "pending": [SESSIONS, OUTBOX]}
    assert table_names(db) == TABLES - {"sessions", "event_outbox"} | {"alembic_version"}

    migrate.downgrade(db)
    assert migrate.status(db) == {
        "current": PRESENCE,
        "head": HEAD,
        "pending": [PUSH, SESSIONS, OUTBOX],
    }
    assert table_names(db) == TABLES - {"push_subscriptions", "sessions", "event_outbox"} | {
        "alembic_version"
    }
    assert "push" not in column_names(db, "conversation_members")
    assert "last_seen_ms" in column_names(db, "users")

    migrate.downgrade(db)
    assert migrate.status(db) == {
        "current": CHANGES,
        "head": HEAD,
        "pending": [PRESENCE, PUSH, SESSIONS, OUTBOX],
    }
    assert table_names(db) == TABLES - {"push_subscriptions", "sessions", "event_outbox"} | {
        "alembic_version"
    }
    assert "last_seen_ms" not in column_names(db, "users")

    migrate.downgrade(db)
    assert migrate.status(db) == {
        "current": BLOCKS,
        "head": HEAD,
        "pending": [CHANGES, PRESENCE, PUSH, SESSIONS, OUTBOX],
    }
    assert table_names(db) == TABLES - {
        "message_changes",
        "message_reactions",
        "push_subscriptions",
        "sessions",
        "event_outbox",
    } | {"alembic_version"}

    migrate.downgrade(db)
    assert migrate.status(db) == {
        "current": HISTORY,
        "head": HEAD,
        "pending": [BLOCKS, CHANGES, PRESENCE, PUSH, SESSIONS, OUTBOX],
    }
    assert table_names(db) == TABLES - {
        "message_changes",
        "message_reactions",
        "blocks",
        "push_subscriptions",
        "sessions",
        "event_outbox",
    } | {"alembic_version"}

    migrate.downgrade(db)
    assert migrate.status(db) == {"current": STATS, "head": HEAD, "pending": [HISTORY, *LATER]}
    assert table_names(db) == STATS_TABLES | {"alembic_version"}

    migrate.downgrade(db)
    assert migrate.status(db) == {
        "current": MARKS,
        "head": HEAD,
        "pending": [STATS, HISTORY, *LATER],
    }
    assert table_names(db) == MARKS_TABLES | {"alembic_version"}

    migrate.downgrade(db)
    assert migrate.status(db) == {
        "current": SAMPLE,
        "head": HEAD,
        "pending": [MARKS, STATS, HISTORY, *LATER],
    }
    assert table_names(db) == INITIAL_TABLES | {"alembic_version"}

    migrate.downgrade(db)
    assert migrate.status(db) == {
        "current": INITIAL,
        "head": HEAD,
        "pending": [SAMPLE, MARKS, STATS, HISTORY, *LATER],
    }
    assert table_names(db) == INITIAL_TABLES | {"alembic_version"}

    migrate.downgrade(db)
    assert migrate.current(db) is None
    assert table_names(db) <= {"alembic_version"}
    assert migrate.status(db)["pending"] == REVISIONS


@pytest.mark.unit
def test_upgrade_creates_the_sqlite_files_directory(sqlite_settings: Settings) -> None:
    assert not sqlite_settings.data_path.exists()
    migrate.upgrade(sqlite_settings)
    assert (sqlite_settings.data_path / "imchat.sqlite3").is_file()


@pytest.mark.unit
def test_reading_a_missing_sqlite_database_creates_nothing(sqlite_settings: Settings) -> None:
    assert migrate.current(sqlite_settings) is None
    assert migrate.status(sqlite_settings)["pending"] == REVISIONS
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
    on_table = " ON messages" if _is_mysql(db) else ""
    query(db, f"DROP INDEX ix_messages_ts{on_table}")

    differences = migrate.check(db)

    assert len(differences) == 1
    assert "add_index" in differences[0]
    assert "ix_messages_ts" in differences[0]


def test_check_reports_a_changed_column(db: Settings) -> None:
    migrate.upgrade(db)
    query(db, "ALTER TABLE sequence_snapshots ADD COLUMN note VARCHAR(10)")

    assert migrate.check(db) == ["remove_column sequence_snapshots.note [database only]"]


def test_check_reports_a_database_behind_head(db: Settings) -> None:
    migrate.upgrade(db, INITIAL)

    differences = migrate.check(db)

    assert (
        f"pending: {SAMPLE}, {MARKS}, {STATS}, {HISTORY}, {BLOCKS}, {CHANGES}, {PRESENCE}, {PUSH}, "
        f"{SESSIONS}, {OUTBOX}" in (differences[0])
    )
    # The tables of the pending revisions are missing, and named; the one
    # they retire is still there, and named too.
    assert sorted(differences[1:]) == [
        "add_column users.last_seen_ms [models only]",
        "add_index Index ix_blocks_blocked_id on blocks(blocked_id) [models only]",
        "add_index Index ix_conversation_members_conversation_id"
        " on conversation_members(conversation_id) [models only]",
        "add_index Index ix_event_outbox_created_ms on event_outbox(created_ms) [models only]",
        "add_index Index ix_messages_ts on messages(ts) [models only]",
        "add_index Index ix_push_subscriptions_user_id"
        " on push_subscriptions(user_id) [models only]",
        "add_index Index ix_sessions_user_id on sessions(user_id) [models only]",
        "add_table Table active_users_daily [models only]",
        "add_table Table blocks [models only]",
        "add_table Table conversation_members [models only]",
        "add_table Table conversations [models only]",
        "add_table Table daily_stats [models only]",
        "add_table Table event_outbox [models only]",
        "add_table Table message_changes [models only]",
        "add_table Table message_reactions [models only]",
        "add_table Table messages [models only]",
        "add_table Table push_subscriptions [models only]",
        "add_table Table sessions [models only]",
        "remove_index Index ix_offline_messages_conversation_id"
        " on offline_messages(conversation_id) [database only]",
        "remove_index Index ix_offline_messages_timestamp"
        " on offline_messages(timestamp) [database only]",
        "remove_index Index ix_offline_messages_user_conv_seq"
        " on offline_messages(user_id, conversation_id, sequence_number) [database only]",
        "remove_table Table offline_messages [database only]",
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


def partitioning(settings: Settings, table: str) -> set[tuple[str, str]]:
    """(method, expression) of each partition of ``table``, and their count."""
    rows = query(
        settings,
        "SELECT PARTITION_METHOD, PARTITION_EXPRESSION FROM information_schema.PARTITIONS"
        " WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = :table",
        table=table,
    )
    assert len(rows) == 16, rows
    return {(method, expr.strip("`")) for method, expr in rows}


@pytest.mark.integration
def test_messages_has_16_key_partitions_by_conversation_on_mariadb(
    mariadb_settings: Settings,
) -> None:
    migrate.upgrade(mariadb_settings)

    assert partitioning(mariadb_settings, "messages") == {("KEY", "conversation_id")}

    # Alembic's comparison ignores partitioning; check() looks at it itself.
    query(mariadb_settings, "ALTER TABLE messages REMOVE PARTITIONING")
    assert migrate.check(mariadb_settings) == [
        "partitioning of messages: database not partitioned, "
        "models KEY(conversation_id) PARTITIONS 16"
    ]


@pytest.mark.integration
def test_message_reactions_has_16_key_partitions_by_conversation_on_mariadb(
    mariadb_settings: Settings,
) -> None:
    migrate.upgrade(mariadb_settings)

    assert partitioning(mariadb_settings, "message_reactions") == {("KEY", "conversation_id")}
    assert migrate.check(mariadb_settings) == []


@pytest.mark.integration
def test_the_downgrade_brings_offline_messages_back_partitioned_on_mariadb(
    mariadb_settings: Settings,
) -> None:
    migrate.upgrade(mariadb_settings)

    migrate.downgrade(mariadb_settings, STATS)

    assert partitioning(mariadb_settings, "offline_messages") == {("KEY", "user_id")}
    migrate.upgrade(mariadb_settings)
    assert migrate.check(mariadb_settings) == []


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


# ------------------------------------------------- pending rows across 0005
def _uid(n: int) -> str:
    return f"00000000-0000-4000-8000-{n:012d}"


ALICE, BOB, CAROL, DAVE, ERIN = (_uid(n) for n in range(1, 6))
NAMES = {ALICE: "alice", BOB: "bob", CAROL: "carol", DAVE: "dave", ERIN: "erin"}
TEAM = _uid(100)
DIRECT = f"d:{min(ALICE, BOB)}:{max(ALICE, BOB)}"
GROUP = f"g:{TEAM}"
PENDING_PASSWORD = "pending across the upgrade"
CREATED = datetime(2026, 11, 30, 12, 0, 0)
JOINED_LATER = datetime(2026, 11, 30, 13, 0, 0)
# Seq 1 of the direct conversation was delivered to bob (his mark, no row
# left); seq 2 is pending for him. The group message (one row per recipient)
# is pending for bob, carol and erin, removed from the group since; dave
# joined after it was sent, so no row was ever written for him.
DIRECT_MESSAGE = ("m-direct-2", DIRECT, 2, ALICE, None, "hello bob", 1_764_500_000_000)
GROUP_MESSAGE = ("m-group-1", GROUP, 1, ALICE, TEAM, "hello team", 1_764_500_001_000)
OFFLINE_ROWS = {
    (BOB, *DIRECT_MESSAGE),
    (BOB, *GROUP_MESSAGE),
    (CAROL, *GROUP_MESSAGE),
    (ERIN, *GROUP_MESSAGE),
}
MARK_ROWS = {(BOB, DIRECT, 1)}
# What load_pending gives each user: (conversation, seq, msg_id, from, body, to, group).
PENDING_FOR = {
    ALICE: [],
    BOB: [
        (DIRECT, 2, "m-direct-2", ALICE, "hello bob", BOB, None),
        (GROUP, 1, "m-group-1", ALICE, "hello team", None, TEAM),
    ],
    CAROL: [(GROUP, 1, "m-group-1", ALICE, "hello team", None, TEAM)],
    DAVE: [],
    ERIN: [(GROUP, 1, "m-group-1", ALICE, "hello team", None, TEAM)],
}


def seed_pending_at_0004(settings: Settings) -> None:
    """A deployment at 0004 with users, a group and pending rows, as its code left them."""
    migrate.upgrade(settings, STATS)
    password_hash = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1).hash(PENDING_PASSWORD)
    users = [
        {"user_id": u, "username": name, "password_hash": password_hash}
        for u, name in NAMES.items()
    ]
    group = {"group_id": TEAM, "name": "team", "creator_id": ALICE, "owner_id": ALICE}
    members = [
        {"group_id": TEAM, "user_id": u, "role": role, "joined_at": at}
        for u, role, at in [
            (ALICE, "owner", CREATED),
            (BOB, "member", CREATED),
            (CAROL, "member", CREATED),
            (DAVE, "member", JOINED_LATER),
        ]
    ]
    offline = [dict(zip(OFFLINE_COLUMNS, row, strict=True)) for row in OFFLINE_ROWS]
    marks = [dict(zip(MARK_COLUMNS, row, strict=True)) for row in MARK_ROWS]
    engine = create_engine(settings.effective_database_url, poolclass=NullPool)
    try:
        with engine.begin() as conn:
            conn.execute(_table("users", *users[0]).insert(), users)
            conn.execute(
                _table("groups", *group, "member_count", "created_at").insert(),
                [{**group, "member_count": len(members), "created_at": CREATED}],
            )
            conn.execute(_table("group_members", *members[0]).insert(), members)
            conn.execute(_table("offline_messages", *OFFLINE_COLUMNS).insert(), offline)
            conn.execute(_table("delivery_marks", *MARK_COLUMNS).insert(), marks)
    finally:
        engine.dispose()


OFFLINE_COLUMNS = (
    "user_id",
    "msg_id",
    "conversation_id",
    "sequence_number",
    "sender_id",
    "group_id",
    "body",
    "timestamp",
)
MARK_COLUMNS = ("user_id", "conversation_id", "sequence_number")


def _table(name: str, *columns: str) -> sa.TableClause:
    return sa.table(name, *(sa.column(c) for c in columns))


def pending_of(settings: Settings) -> dict[str, list[tuple[Any, ...]]]:
    """Every user's pending messages, as imchat.services.pending loads them."""
    services = Services(settings)
    try:
        return {
            user: [
                (m.conversation_id, m.seq, m.msg_id, m.sender, m.body, m.to, m.group)
                for m in load_pending(services, user)
            ]
            for user in NAMES
        }
    finally:
        services.close()


def test_upgrade_moves_pending_rows_into_history_once(db: Settings) -> None:
    seed_pending_at_0004(db)

    migrate.upgrade(db)

    # The group message once, not once per recipient.
    assert sorted(
        query(
            db,
            "SELECT conversation_id, seq, msg_id, sender_id, recipient_id, group_id,"
            " body, ts FROM messages",
        )
    ) == sorted(
        [
            (DIRECT, 2, "m-direct-2", ALICE, BOB, None, "hello bob", DIRECT_MESSAGE[-1]),
            (GROUP, 1, "m-group-1", ALICE, None, TEAM, "hello team", GROUP_MESSAGE[-1]),
        ]
    )
    assert sorted(
        query(db, "SELECT conversation_id, kind, group_id, last_seq FROM conversations")
    ) == [
        (DIRECT, "direct", None, 2),
        (GROUP, "group", TEAM, 1),
    ]
    members = query(
        db,
        "SELECT user_id, conversation_id, peer_id, delivered_seq, joined_seq, left_seq"
        " FROM conversation_members",
    )
    assert sorted(members) == sorted(
        [
            (ALICE, DIRECT, BOB, 0, 0, None),
            (BOB, DIRECT, ALICE, 1, 0, None),  # his old mark
            (ALICE, GROUP, None, 0, 0, None),
            (BOB, GROUP, None, 0, 0, None),
            (CAROL, GROUP, None, 0, 0, None),
            (DAVE, GROUP, None, 0, 1, None),  # joined after seq 1
            (ERIN, GROUP, None, 0, 0, 1),  # removed after seq 1, still hers
        ]
    )
    assert pending_of(db) == PENDING_FOR
    assert migrate.check(db) == []


def test_downgrade_brings_the_same_pending_rows_and_marks_back(db: Settings) -> None:
    seed_pending_at_0004(db)
    migrate.upgrade(db)

    migrate.downgrade(db, STATS)

    assert table_names(db) == STATS_TABLES | {"alembic_version"}
    columns = ", ".join(OFFLINE_COLUMNS)
    assert set(query(db, f"SELECT {columns} FROM offline_messages")) == OFFLINE_ROWS
    marks = query(db, f"SELECT {', '.join(MARK_COLUMNS)} FROM delivery_marks")
    assert set(marks) == MARK_ROWS
    # And up again: the same history, the same pending set.
    migrate.upgrade(db)
    assert pending_of(db) == PENDING_FOR


def _is_mysql(settings: Settings) -> bool:
    return make_url(settings.effective_database_url).get_backend_name() in ("mysql", "mariadb")


def _groups(settings: Settings) -> list[Any]:
    table = "`groups`" if _is_mysql(settings) else '"groups"'
    return query(
        settings,
        "SELECT g.name, u.username AS owner, g.member_count"
        f" FROM {table} g JOIN users u ON u.user_id = g.owner_id",
    )
