"""Seq assignment with durable reservations (imchat/services/sequences.py), on
the embedded twins and on MariaDB + Redis: new conversations and lost
counters are reserved in one transaction per batch, and seqs never go back."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import redis
from sqlalchemy import event

from imchat.backends.base import SeqRequest
from imchat.backends.seq_embedded import EmbeddedSequenceStore
from imchat.backends.seq_redis import seq_key
from imchat.config import Settings
from imchat.container import Services
from imchat.ops import migrate
from imchat.services import sequences
from imchat.stores import sequences as sequence_store

INTERVAL = 50


@pytest.fixture(
    params=[
        pytest.param("embedded", marks=pytest.mark.unit),
        pytest.param("real", marks=pytest.mark.integration),
    ]
)
def services(request: pytest.FixtureRequest, settings: Settings, unique: str) -> Iterator[Services]:
    settings = settings.replace(seq_snapshot_interval=INTERVAL)
    if request.param == "real":
        settings = settings.replace(
            database_url=request.getfixturevalue("mysql_url"),
            redis_url=request.getfixturevalue("redis_url"),
        )
    migrate.upgrade(settings)
    built = Services(settings)
    yield built
    built.close()


def conversations(count: int) -> list[str]:
    return [f"d:test-{uuid.uuid4().hex[:12]}" for _ in range(count)]


def requests_for(conversation_ids: list[str], per: int = 1) -> list[SeqRequest]:
    return [
        SeqRequest(cid, f"sender:{uuid.uuid4().hex}", uuid.uuid4().hex, 1)
        for _ in range(per)
        for cid in conversation_ids
    ]


def count_commits(services: Services) -> list[int]:
    commits = [0]

    @event.listens_for(services.db.engine, "commit")
    def on_commit(conn: object) -> None:
        commits[0] += 1

    return commits


def lose_counters(services: Services, conversation_ids: list[str]) -> None:
    """What a Redis restart without persistence (or an eviction) does."""
    if services.settings.redis_url:
        client = redis.Redis.from_url(services.settings.redis_url)
        try:
            client.delete(*[seq_key(c) for c in conversation_ids])
        finally:
            client.close()
    else:  # a fresh twin file knows no counter at all
        path = f"{services.settings.data_dir}/lost-{uuid.uuid4().hex}.sqlite3"
        services.__dict__["seqs"] = EmbeddedSequenceStore(path)


def test_a_burst_of_new_conversations_costs_one_transaction(services: Services) -> None:
    ids = conversations(40)
    commits = count_commits(services)

    assigned = sequences.assign(services, requests_for(ids, per=2))

    assert [a.seq for a in assigned] == [1] * 40 + [2] * 40
    assert commits[0] == 1
    with services.db.session() as session:
        assert sequence_store.reserved(session, ids) == {c: INTERVAL for c in ids}


def test_lost_counters_restart_above_their_reservations_in_one_transaction(
    services: Services,
) -> None:
    ids = conversations(30)
    sequences.assign(services, requests_for(ids, per=3))
    lose_counters(services, ids)
    commits = count_commits(services)

    assigned = sequences.assign(services, requests_for(ids))

    assert {a.seq for a in assigned} == {INTERVAL + 1}
    assert commits[0] == 1
    with services.db.session() as session:
        assert sequence_store.reserved(session, ids) == {c: 2 * INTERVAL for c in ids}


def test_a_reservation_is_raised_before_seqs_pass_it(services: Services) -> None:
    [cid] = conversations(1)

    seqs = [a.seq for a in sequences.assign(services, requests_for([cid] * (INTERVAL + 5)))]

    assert seqs == list(range(1, INTERVAL + 6))
    with services.db.session() as session:
        assert sequence_store.reserved(session, [cid])[cid] >= INTERVAL + 5


def test_reserve_never_lowers_a_reservation(services: Services) -> None:
    low, high = conversations(2)
    with services.db.session() as session:
        sequence_store.reserve(session, {low: 10, high: 500})
    with services.db.session() as session:
        sequence_store.reserve(session, {low: 20, high: 100})
    with services.db.session() as session:
        assert sequence_store.reserved(session, [low, high, "d:never"]) == {
            low: 20,
            high: 500,
            "d:never": 0,
        }
