"""The conversation store on SQLite and MariaDB: last seqs only rise, marks stay in bounds."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from imchat.config import Settings
from imchat.container import Services
from imchat.ops import migrate
from imchat.stores import conversations as store
from imchat.stores.conversations import Activity


@pytest.fixture(
    params=[
        pytest.param("sqlite", marks=pytest.mark.unit),
        pytest.param("mariadb", marks=pytest.mark.integration),
    ]
)
def services(request: pytest.FixtureRequest, settings: Settings) -> Iterator[Services]:
    if request.param == "mariadb":
        settings = settings.replace(database_url=request.getfixturevalue("mysql_url"))
    migrate.upgrade(settings)
    built = Services(settings)
    yield built
    built.close()


def last_of(services: Services, conversation_id: str) -> tuple[int, int]:
    with services.db.session() as session:
        [view] = store.for_user(session, "alice", 1, conversation_id=conversation_id)
    return view.last_seq, view.last_ts


def test_a_batch_raises_last_seqs_and_an_older_batch_lowers_nothing(services: Services) -> None:
    a, b = f"d:alice:{uuid.uuid4().hex}", f"d:alice:{uuid.uuid4().hex}"
    with services.db.session() as session:
        store.add_direct_members(session, [(a, "alice", "bob"), (b, "alice", "carol")])
        store.record_activity(
            session, {a: Activity("direct", None, 5, 500), b: Activity("direct", None, 2, 200)}
        )
    with services.db.session() as session:  # a replayed, older batch, and a newer one for b
        store.record_activity(
            session, {a: Activity("direct", None, 3, 300), b: Activity("direct", None, 9, 900)}
        )
    assert last_of(services, a) == (5, 500)
    assert last_of(services, b) == (9, 900)


def test_marks_rise_never_fall_and_stop_at_the_last_seq(services: Services) -> None:
    conversation = f"d:alice:{uuid.uuid4().hex}"
    with services.db.session() as session:
        store.add_direct_members(session, [(conversation, "alice", "bob")])
        store.record_activity(session, {conversation: Activity("direct", None, 6, 1)})
        assert store.move_marks(session, "bob", conversation, 4, 2)
        assert not store.move_marks(session, "bob", conversation, 3, 1)  # lower: nothing moves
        assert store.move_marks(session, "bob", conversation, 0, 50)  # capped at 6
        member = store.membership(session, "bob", conversation)
    assert member is not None and (member.delivered_seq, member.read_seq) == (6, 6)
