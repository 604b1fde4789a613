"""This gateway's share of presence: arrivals here, departures anywhere.

Connections arriving on this gateway and users the router reports without
any route (on every gateway: each one watches every route) are queued and
worked off by one background thread, so that neither a connect nor the
router's watch waits on the cache or the database. Each departure is
settled after the grace period (``imchat.services.presence``).

Presence is a courtesy: when the cache or the database fails, the change is
logged and skipped; the conversation list still shows the router's truth.
"""

from __future__ import annotations

import heapq
import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from sqlalchemy.exc import SQLAlchemyError

from imchat.backends.base import BackendUnavailable
from imchat.services import presence

if TYPE_CHECKING:
    from imchat.container import Services

log = logging.getLogger("imchat.presence")
ARRIVE, DEPART = "arrive", "depart"
IDLE = ("", "", 0)  # no event came: only the due settlements to look at


class PresenceTracker:
    def __init__(self, services: Services) -> None:
        self.services = services
        self._events: queue.Queue[tuple[str, str, int] | None] = queue.Queue()
        self._due: list[tuple[float, str, str]] = []  # (monotonic due, user, "gone:" state)
        self._thread: threading.Thread | None = None
        self._listening = False

    def start(self) -> None:
        if not self._listening:  # the router keeps its listeners for the process's life
            self.services.router.on_unrouted(self.unrouted)
            self._listening = True
        self._thread = threading.Thread(target=self.run, name="imchat-presence", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        thread, self._thread = self._thread, None
        if thread is not None:
            self._events.put(None)
            thread.join(timeout)

    def arrived(self, user_id: str) -> None:
        """The user's first connection on this gateway opened."""
        self._events.put((ARRIVE, user_id, presence.now_ms()))

    def unrouted(self, user_ids: list[str]) -> None:
        """The router's listener: these users have no route left anywhere."""
        if self._thread is None:
            return
        at = presence.now_ms()
        for user_id in user_ids:
            self._events.put((DEPART, user_id, at))

    def run(self) -> None:
        while True:
            try:
                event = self._events.get(timeout=self._wait())
            except queue.Empty:
                event = IDLE
            if event is None:
                return
            if event is not IDLE:
                self._guarded(self._handle, *event)
            self._settle_due()

    def _wait(self) -> float:
        if not self._due:
            return 1.0
        return min(max(self._due[0][0] - time.monotonic(), 0.0), 1.0)

    def _handle(self, kind: str, user_id: str, at_ms: int) -> None:
        if kind == ARRIVE:
            presence.arrive(self.services, user_id)
            return
        state = presence.depart(self.services, user_id, at_ms)
        if state is not None:
            grace = self.services.settings.presence_grace_seconds
            left_ago = max(presence.now_ms() - int(state.removeprefix(presence.GONE)), 0) / 1000
            due = time.monotonic() + max(grace - left_ago, 0.0)
            heapq.heappush(self._due, (due, user_id, state))

    def _settle_due(self) -> None:
        now = time.monotonic()
        while self._due and self._due[0][0] <= now:
            _, user_id, state = heapq.heappop(self._due)
            self._guarded(presence.settle, self.services, user_id, state)

    def _guarded(self, func: Callable[..., None], *args: object) -> None:
        try:
            func(*args)
        except (BackendUnavailable, SQLAlchemyError) as exc:
            log.warning("presence change skipped: %s", exc)
        except Exception:
            log.exception("presence change failed")
