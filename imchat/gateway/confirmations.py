"""``delivered`` frames, gathered and confirmed in batches.

Clients confirm every message; one Celery task per frame would put a broker
round trip (~2.5 ms) on the hot path. With Celery the gateway keeps the
highest seq per (user, conversation) and hands them over every
``FLUSH_SECONDS`` as one task. Embedded, there is no round trip to save: the
confirmation is written at once, so once a later frame of the connection is
answered, its ``delivered`` is on disk.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

from imchat.services.pending import CONFIRM_DELIVERED

if TYPE_CHECKING:
    from imchat.container import Services

log = logging.getLogger("imchat.gateway")
FLUSH_SECONDS = 0.05


class ConfirmationBatcher:
    def __init__(self, services: Services) -> None:
        self.services = services
        self._lock = threading.Lock()
        self._marks: dict[tuple[str, str], int] = {}
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="imchat-confirm", daemon=True)

    def start(self) -> None:
        if not self.services.jobs.inline:  # inline, nothing is ever held back
            self._thread.start()

    def add(self, user_id: str, conversation_id: str, seq: int) -> None:
        if self.services.jobs.inline:
            self.services.jobs.dispatch(CONFIRM_DELIVERED, [[user_id, conversation_id, seq]])
            return
        self._remember(user_id, conversation_id, seq)

    def _remember(self, user_id: str, conversation_id: str, seq: int) -> None:
        with self._lock:
            key = (user_id, conversation_id)
            self._marks[key] = max(seq, self._marks.get(key, 0))

    def flush(self) -> None:
        with self._lock:
            marks, self._marks = self._marks, {}
        if not marks:
            return
        try:
            self.services.jobs.dispatch(
                CONFIRM_DELIVERED, [[u, c, s] for (u, c), s in marks.items()]
            )
        except Exception:
            log.warning("confirmations not handed over; retrying", exc_info=True)
            for (user_id, conversation_id), seq in marks.items():
                self._remember(user_id, conversation_id, seq)

    def _run(self) -> None:
        while not self._stopping.wait(FLUSH_SECONDS):
            self.flush()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(timeout=2)
        self.flush()
