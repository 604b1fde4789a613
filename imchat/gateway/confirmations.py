"""``delivered`` and ``read`` marks, gathered and written in batches.

Clients confirm every message; one Celery task per frame would put a broker
round trip (~2.5 ms) on the hot path. With Celery the gateway keeps the
highest marks per (user, conversation) and hands them over every
``FLUSH_SECONDS`` as one task. Embedded, there is no round trip to save: the
marks are written at once, so once a later frame of the connection is
answered, its ``delivered`` is on disk.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

from imchat.services.pending import MOVE_MARKS

if TYPE_CHECKING:
    from imchat.container import Services

log = logging.getLogger("imchat.gateway")
FLUSH_SECONDS = 0.05
Marks = dict[tuple[str, str], tuple[int, int]]


class ConfirmationBatcher:
    def __init__(self, services: Services) -> None:
        self.services = services
        self._lock = threading.Lock()
        self._marks: Marks = {}
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="imchat-confirm", daemon=True)

    def start(self) -> None:
        if not self.services.jobs.inline:  # inline, nothing is ever held back
            self._thread.start()

    def add(self, user_id: str, conversation_id: str, delivered: int, read: int = 0) -> None:
        """The user has the conversation up to ``delivered``, and has read it up to ``read``."""
        if self.services.jobs.inline:
            marks = [[user_id, conversation_id, max(delivered, read), read]]
            self.services.jobs.dispatch(MOVE_MARKS, marks)
            return
        self._remember({(user_id, conversation_id): (max(delivered, read), read)})

    def _remember(self, marks: Marks) -> None:
        with self._lock:
            for key, (delivered, read) in marks.items():
                known = self._marks.get(key, (0, 0))
                self._marks[key] = (max(delivered, known[0]), max(read, known[1]))

    def flush(self) -> None:
        with self._lock:
            marks, self._marks = self._marks, {}
        if not marks:
            return
        try:
            self.services.jobs.dispatch(
                MOVE_MARKS, [[u, c, d, r] for (u, c), (d, r) in marks.items()]
            )
        except Exception:
            log.warning("confirmations not handed over; retrying", exc_info=True)
            self._remember(marks)

    def _run(self) -> None:
        while not self._stopping.wait(FLUSH_SECONDS):
            self.flush()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(timeout=2)
        self.flush()
