"""An upgraded deployment still delivers what was pending (issue 12): a
SQLite database holding pending rows at revision 0004 is migrated to head,
the embedded server is started on it, and the recipient connects."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from imchat.client import ApiClient
from imchat.config import load_settings
from imchat.ops import migrate
from tests.support.clients import next_address
from tests.support.server import EmbeddedServer, run_server
from tests.test_migrations import (
    ALICE,
    BOB,
    DAVE,
    ERIN,
    NAMES,
    PENDING_FOR,
    PENDING_PASSWORD,
    seed_pending_at_0004,
)

pytestmark = pytest.mark.e2e


@pytest.fixture
def upgraded_server(tmp_path: Path) -> Iterator[EmbeddedServer]:
    """The embedded server on a data dir whose database held pending rows at 0004."""
    settings = load_settings(environ={}, overrides={"data_dir": str(tmp_path / "var")})
    seed_pending_at_0004(settings)
    migrate.upgrade(settings)
    assert migrate.current(settings) == migrate.head()
    yield from run_server(tmp_path)


def test_pending_rows_of_an_upgraded_database_are_pushed_on_connect(
    upgraded_server: EmbeddedServer,
) -> None:
    # bob has a direct and a group message pending; the others are the
    # migration's edge cases: erin left the group after its message (still
    # hers), dave joined after it (never his), alice sent everything.
    for user in (BOB, ERIN, DAVE, ALICE):
        api = ApiClient(upgraded_server.base_url, source_ip=next_address())
        session = api.login(NAMES[user], PENDING_PASSWORD)
        assert session.user_id == user

        with api.connect(session.token) as conn:
            count = conn.wait_synced()
            # Pushed before ``synced``: all of them are in already, and no more.
            pushed = [conn.messages.get_nowait() for _ in range(conn.messages.qsize())]

        expected = PENDING_FOR[user]
        assert count == len(expected), NAMES[user]
        got = [
            (
                m["conversation_id"],
                m["seq"],
                m["msg_id"],
                m["from"],
                m["body"],
                m.get("to"),
                m.get("group"),
            )
            for m in pushed
        ]
        assert sorted(got) == sorted(expected), NAMES[user]
    upgraded_server.assert_no_traceback()
