"""Services on the embedded twins for tests that drive the code in-process:
a migrated SQLite database in the test's data dir, and plain accounts."""

from __future__ import annotations

from datetime import UTC, datetime

from imchat.config import Settings
from imchat.container import Services
from imchat.ops import migrate
from imchat.stores import users as user_store


def migrated_services(settings: Settings) -> Services:
    migrate.upgrade(settings)
    return Services(settings)


def add_users(services: Services, *user_ids: str) -> None:
    """Accounts whose user id is also their username (no usable password)."""
    with services.db.session() as session:
        for user_id in user_ids:
            user_store.insert(session, user_id, user_id, "x", datetime.now(UTC))
