"""The beat jobs and the daily statistics, on SQLite and on MariaDB (and etcd for routes)."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from imchat.backends.etcd import EtcdRouter
from imchat.backends.etcd.http import Endpoints, b64, range_end
from imchat.backends.etcd.http import text as b64_text
from imchat.backends.etcd.keys import Keys
from imchat.backends.etcd.prune import delete_if_unchanged, read_entries, stale_routes
from imchat.config import DAY, Settings
from imchat.container import Services
from imchat.ops import cli, migrate
from imchat.services import maintenance, stats
from imchat.services.jobs import JOBS
from imchat.stores import db, history
from imchat.stores import stats as stats_store
from imchat.stores.models import ActiveUserDay, DailyStats, Message
from imchat.wire.bus import MessageEnvelope

NOW_MS = int(time.time() * 1000)
ROOT = Path(__file__).resolve().parents[2]


# ------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def mariadb_url() -> Iterator[str]:
    """A database of this module's own on the test MariaDB server, migrated, then dropped."""
    from tests.conftest import require_service

    server = make_url(require_service("mysql"))
    name = f"imchat_ops_{uuid.uuid4().hex[:12]}"
    admin = create_engine(server.set(database=""), poolclass=NullPool)
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4"))
    url = server.set(database=name, query={"charset": "utf8mb4"})
    rendered = url.render_as_string(hide_password=False)
    try:
        migrate.upgrade(Settings(database_url=rendered))
        yield rendered
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
def services(request: pytest.FixtureRequest, settings: Settings) -> Iterator[Services]:
    """Services on an empty, migrated database, once per kind of database."""
    if request.param == "mariadb":
        settings = settings.replace(database_url=request.getfixturevalue("mariadb_url"))
    else:
        migrate.upgrade(settings)
    built = Services(settings)
    with built.db.session() as session:
        for table in ("messages", "daily_stats", "active_users_daily"):
            session.execute(text(f"DELETE FROM {table}"))
    yield built
    built.close()


SEQS = itertools.count(1)


def history_row(age_days: float, conversation: str = "d:a:b") -> dict[str, Any]:
    """A message ``age_days`` old, spread over 16 conversations (and partitions) by the caller."""
    msg_id = uuid.uuid4().hex
    return {
        "conversation_id": conversation,
        "seq": next(SEQS),
        "msg_id": msg_id,
        "sender_id": "a",
        "client_id": msg_id,
        "recipient_id": "b",
        "body": "hi",
        "ts": NOW_MS - int(age_days * DAY * 1000),
    }


def store(services: Services, rows: list[dict[str, Any]]) -> None:
    with services.db.session() as session:
        history.append(session, rows)


def message_ids(services: Services) -> set[str]:
    with services.db.session() as session:
        return set(session.scalars(select(Message.msg_id)))


def run_at_once(work: Callable[[], Any], times: int) -> list[Any]:
    """``work`` in ``times`` threads started together; their results (errors re-raised)."""
    barrier = threading.Barrier(times)
    results: list[Any] = []
    errors: list[BaseException] = []

    def run() -> None:
        barrier.wait()
        try:
            results.append(work())
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(times)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    if errors:
        raise errors[0]
    return results


def envelope(sender: str, ts: int, group: str | None = None) -> MessageEnvelope:
    return MessageEnvelope(
        msg_id=uuid.uuid4().hex,
        cid=uuid.uuid4().hex,
        sender=sender,
        conversation_id=f"g:{group}" if group else f"d:{sender}:someone",
        body="hi",
        ts=ts,
        gateway="gw",
        conn="c",
        to=None if group else "someone",
        group=group,
    )


def note_messages(services: Services, envelopes: list[MessageEnvelope]) -> None:
    """Count messages as the bus consumer does: in a transaction, retried on a lock conflict."""

    def count() -> None:
        with services.db.session() as session:
            stats.record_messages(session, envelopes)

    db.retry_lock_conflicts(count)


def day_ms(day: date, hour: int = 12) -> int:
    return int(datetime(day.year, day.month, day.day, hour, tzinfo=UTC).timestamp() * 1000)


def stats_of(services: Services, day: date) -> tuple[int, int, int] | None:
    with services.db.session() as session:
        row = session.get(DailyStats, day)
        return (row.direct_messages, row.group_messages, row.active_users) if row else None


def today() -> date:
    return datetime.now(UTC).date()


# --------------------------------------------------------------- the purge
def test_purge_deletes_only_history_older_than_the_retention(services: Services) -> None:
    old = [history_row(366, conversation=f"d:a:u{i}") for i in range(5)]
    young = [history_row(364), history_row(0)]
    store(services, old + young)

    JOBS[maintenance.PURGE_EXPIRED_HISTORY](services, None)

    assert message_ids(services) == {r["msg_id"] for r in young}
    JOBS[maintenance.PURGE_EXPIRED_HISTORY](services, None)  # again: nothing more goes
    assert message_ids(services) == {r["msg_id"] for r in young}


def test_purge_follows_the_retention_setting(services: Services) -> None:
    store(services, [history_row(2), keep := history_row(0.5)])
    short = Services(services.settings.replace(history_retention_days=1))
    try:
        maintenance.purge_expired_history(short)
        assert message_ids(services) == {keep["msg_id"]}
    finally:
        short.close()


def test_a_retention_of_zero_keeps_history_for_ever(services: Services) -> None:
    store(services, [ancient := history_row(10_000)])
    forever = Services(services.settings.replace(history_retention_days=0))
    try:
        maintenance.purge_expired_history(forever)
        assert message_ids(services) == {ancient["msg_id"]}
    finally:
        forever.close()


def test_purge_is_batched_and_bounded_per_run(services: Services) -> None:
    store(services, [history_row(400, conversation=f"d:a:u{i % 3}") for i in range(11)])
    cutoff = NOW_MS - 365 * DAY * 1000

    assert maintenance.purge_history_before(services, cutoff, batch=3, max_batches=2) == 6
    assert len(message_ids(services)) == 5
    assert maintenance.purge_history_before(services, cutoff, batch=3, max_batches=2) == 5
    assert maintenance.purge_history_before(services, cutoff, batch=3, max_batches=2) == 0


def test_two_purges_at_once_delete_each_row_once(services: Services) -> None:
    old = [history_row(400, conversation=f"d:a:u{i % 16}") for i in range(400)]
    store(services, [*old, young := history_row(1)])
    cutoff = NOW_MS - 365 * DAY * 1000

    deleted = run_at_once(
        lambda: maintenance.purge_history_before(services, cutoff, batch=25, max_batches=100), 2
    )

    assert sum(deleted) == len(old)
    assert message_ids(services) == {young["msg_id"]}


# ------------------------------------------------------------ daily stats
def test_messages_are_counted_per_utc_day_and_sender(services: Services) -> None:
    day, before = today(), today() - timedelta(days=1)
    note_messages(
        services,
        [
            envelope("alice", day_ms(day, 0)),
            envelope("alice", day_ms(day, 1), group="g1"),
            envelope("bob", day_ms(day, 23), group="g1"),
            envelope("carol", day_ms(before, 23)),
        ],
    )
    note_messages(services, [envelope("alice", day_ms(day))])
    note_messages(services, [])

    # Active users are counted by the job; the message counters are live.
    assert stats_of(services, day) == (2, 2, 0)
    assert stats_of(services, before) == (1, 0, 0)
    JOBS[maintenance.COUNT_DAILY_STATS](services, "today")
    JOBS[maintenance.COUNT_DAILY_STATS](services, "yesterday")
    assert stats_of(services, day) == (2, 2, 2)
    assert stats_of(services, before) == (1, 0, 1)


def test_concurrent_consumers_lose_no_count(services: Services) -> None:
    day = today()
    senders = [f"user{i}" for i in range(7)]

    def consume() -> None:
        for batch in range(10):
            note_messages(
                services,
                [envelope(s, day_ms(day), group="g" if batch % 2 else None) for s in senders],
            )

    run_at_once(consume, 4)
    maintenance.count_daily_stats(services, day.isoformat())

    assert stats_of(services, day) == (4 * 5 * 7, 4 * 5 * 7, 7)


def test_counting_a_day_twice_or_twice_at_once_gives_the_same_row(services: Services) -> None:
    day = today()
    note_messages(services, [envelope(f"s{i}", day_ms(day)) for i in range(3)])

    run_at_once(lambda: maintenance.count_daily_stats(services, "today"), 2)
    first = stats_of(services, day)
    maintenance.count_daily_stats(services, "today")

    assert first == stats_of(services, day) == (3, 0, 3)
    with services.db.session() as session:
        assert session.scalar(select(func.count()).select_from(DailyStats)) == 1


def test_old_active_user_rows_are_purged_and_their_days_kept(services: Services) -> None:
    keep = maintenance.ACTIVE_USERS_KEEP_DAYS
    old_day = today() - timedelta(days=keep + 3)
    recent_day = today() - timedelta(days=keep - 2)
    note_messages(
        services,
        [envelope(f"o{i}", day_ms(old_day)) for i in range(4)]
        + [envelope("r", day_ms(recent_day))],
    )
    with services.db.session() as session:  # as counted back when the day was recent
        stats_store.set_active_users(session, old_day, 4)

    maintenance.count_daily_stats(services, "today")  # purges what is past the window

    with services.db.session() as session:
        days = set(session.scalars(select(ActiveUserDay.day)))
    assert days == {recent_day}
    # Recounting a purged day would write 0: the job leaves its row alone.
    maintenance.count_daily_stats(services, old_day.isoformat())
    assert stats_of(services, old_day) == (4, 0, 4)
    maintenance.count_daily_stats(services, recent_day.isoformat())
    assert stats_of(services, recent_day) == (1, 0, 1)


def test_stats_command_prints_the_days(
    services: Services, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    day = today()
    note_messages(services, [envelope("a", day_ms(day)), envelope("b", day_ms(day), group="g")])
    monkeypatch.setenv("IMCHAT_DATA_DIR", services.settings.data_dir)
    monkeypatch.setenv("IMCHAT_DATABASE_URL", services.settings.database_url)

    assert cli.main(["stats", "--days", "3", "--refresh"]) == 0

    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == [
        "day",
        "messages",
        "direct_messages",
        "group_messages",
        "active_users",
    ]
    assert [line.split()[0] for line in lines[1:]] == [
        (day - timedelta(days=n)).isoformat() for n in (2, 1, 0)
    ]
    assert lines[-1].split()[1:] == ["2", "1", "1", "2"]
    assert lines[1].split()[1:] == ["0", "0", "0", "0"]


# ------------------------------------------------------------ route pruning
@pytest.mark.unit
def test_pruning_routes_keeps_live_routes_on_the_embedded_router(settings: Settings) -> None:
    embedded = Services(settings)
    embedded.router.register_gateway("gw")
    embedded.router.add_route("alice", "gw")

    maintenance.prune_stale_routes(embedded)

    assert embedded.router.gateways_for("alice") == {"gw"}


@pytest.fixture
def etcd_settings(etcd_endpoints: str, settings: Settings, unique: str) -> Settings:
    return settings.replace(etcd_endpoints=etcd_endpoints, etcd_prefix=f"/imchat-ops-{unique}")


class Etcd:
    """Raw writes to etcd's JSON gateway, to leave routes as a bug or a lost lease would."""

    def __init__(self, settings: Settings) -> None:
        self.url = settings.etcd_endpoint_list[0].rstrip("/") + "/v3"
        self.root = settings.etcd_prefix + "/"

    def post(self, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        response = requests.post(self.url + path, json=payload, timeout=5)
        response.raise_for_status()
        answer: dict[str, Any] = response.json()
        return answer

    def lease(self) -> int:
        return int(self.post("/lease/grant", {"TTL": 60})["ID"])

    def put(self, key: str, lease: int = 0) -> None:
        self.post("/kv/put", {"key": b64(self.root + key), "value": b64("1"), "lease": lease})

    def keys(self) -> set[str]:
        found = self.post("/kv/range", {"key": b64(self.root), "range_end": range_end(self.root)})
        return {b64_text(kv["key"])[len(self.root) :] for kv in found.get("kvs", [])}

    def wipe(self) -> None:
        self.post("/kv/deleterange", {"key": b64(self.root), "range_end": range_end(self.root)})


@pytest.mark.integration
def test_prune_deletes_routes_without_their_gateways_lease(etcd_settings: Settings) -> None:
    etcd = Etcd(etcd_settings)
    router = EtcdRouter(etcd_settings)
    services = Services(etcd_settings)
    try:
        router.register_gateway("gw1")
        router.add_route("alice", "gw1")
        router.add_route("bob", "gw1")
        etcd.put("routes/carol/ghost")  # no gateway key at all, no lease
        etcd.put("routes/dave/gw1", lease=etcd.lease())  # gw1's key, another lease
        etcd.put("routes/erin/gw1")  # no lease: would never expire

        maintenance.prune_stale_routes(services, None)

        assert etcd.keys() == {"gateways/gw1", "routes/alice/gw1", "routes/bob/gw1"}
        assert services.router.prune_stale(maintenance.PRUNE_MAX_ROUTES) == 0  # nothing left
    finally:
        router.unregister_gateway("gw1")
        router.close()
        services.close()
        etcd.wipe()


@pytest.mark.integration
def test_prune_keeps_a_route_written_again_since_it_was_read(etcd_settings: Settings) -> None:
    etcd = Etcd(etcd_settings)
    services = Services(etcd_settings)
    try:
        etcd.put("routes/carol/ghost")
        endpoints = Endpoints(etcd_settings.etcd_endpoint_list)
        keys = Keys(etcd_settings.etcd_prefix)
        stale = stale_routes(read_entries(endpoints, keys), keys)
        assert [key for key, _ in stale] == [etcd.root + "routes/carol/ghost"]
        lease = etcd.lease()
        etcd.put("gateways/ghost", lease=lease)  # the gateway comes (back) and
        etcd.put("routes/carol/ghost", lease=lease)  # writes its route again

        assert delete_if_unchanged(endpoints, *stale[0]) == 0

        assert etcd.keys() == {"gateways/ghost", "routes/carol/ghost"}
        assert services.router.prune_stale(maintenance.PRUNE_MAX_ROUTES) == 0
        endpoints.close()
    finally:
        services.close()
        etcd.wipe()


@pytest.mark.integration
def test_two_prunes_at_once_delete_each_route_once(etcd_settings: Settings) -> None:
    etcd = Etcd(etcd_settings)
    workers = [Services(etcd_settings), Services(etcd_settings)]  # two beat runs, two processes
    routers = iter([services.router for services in workers])
    try:
        for i in range(30):
            etcd.put(f"routes/user{i}/gone")

        pruned = run_at_once(lambda: next(routers).prune_stale(maintenance.PRUNE_MAX_ROUTES), 2)

        assert sum(pruned) == 30
        assert etcd.keys() == set()
    finally:
        for services in workers:
            services.close()
        etcd.wipe()


# ------------------------------------------------------------ the schedule
@pytest.mark.unit
def test_the_beat_schedule_sends_registered_tasks_with_one_payload() -> None:
    # A fresh process, as a worker starts: only what tasks/jobs.py imports is registered.
    probe = (
        "import json, tasks.jobs; from tasks import celery; "
        "print(json.dumps({'tasks': sorted(celery.tasks), 'schedule': "
        "{n: [e['task'], e['args']] for n, e in celery.conf.beat_schedule.items()}}))"
    )
    environ = {k: v for k, v in os.environ.items() if not k.startswith("IMCHAT_")}
    out = subprocess.run(
        [sys.executable, "-c", probe], env=environ, cwd=ROOT, capture_output=True, check=True
    )
    found = json.loads(out.stdout)

    assert {task for task, _ in found["schedule"].values()} == {
        maintenance.PURGE_EXPIRED_HISTORY,
        maintenance.COUNT_DAILY_STATS,
        maintenance.PRUNE_STALE_ROUTES,
    }
    for name, (task, args) in found["schedule"].items():
        assert task in found["tasks"], f"{name}: {task} is not a Celery task of the worker"
        assert len(args) == 1, f"{name}: tasks take exactly one payload"
    assert found["schedule"]["daily-stats-yesterday"][1] == ["yesterday"]
