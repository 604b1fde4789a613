"""Sockets of ended sessions: closed with 4401 when the word comes over the
gateway channel, and, in case that word was lost (a channel outage), when
this gateway's periodic sweep finds their session ended in the database."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from sqlalchemy.exc import SQLAlchemyError

from imchat.stores import sessions as session_store

if TYPE_CHECKING:
    from imchat.container import Services

log = logging.getLogger("imchat.gateway")
SESSION_ENDED = 4401  # the contract's close code for a token no longer good


class SessionSweeper:
    """Every ``session_sweep_seconds``, one query for the sessions of this
    gateway's connections: the ended ones are closed (never a read per frame)."""

    def __init__(
        self,
        services: Services,
        open_sessions: Callable[[], set[str]],
        end: Callable[[Iterable[str]], None],
    ) -> None:
        self.services = services
        self._open_sessions = open_sessions
        self._end = end
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self.run, name="imchat-sessions", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(2.0)

    def run(self) -> None:
        while not self._stop.wait(self.services.settings.session_sweep_seconds):
            self.sweep()

    def sweep(self) -> None:
        session_ids = self._open_sessions()
        if not session_ids:
            return
        try:
            with self.services.db.session() as session:
                ended = session_store.ended_among(session, session_ids)
        except SQLAlchemyError as exc:
            log.warning("sessions not swept: %s", exc)
            return
        if ended:
            log.info("closing the sockets of %d ended sessions", len(ended))
            self._end(ended)
