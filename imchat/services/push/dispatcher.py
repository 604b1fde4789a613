"""Batches of unrouted recipients for the push job, off the delivery path.

The bus consumer hands over, after a batch's messages are stored and sent to
the gateways, each message with the recipients that had no route
(``Outbox.send``). ``add`` only puts them on a bounded in-memory queue and
never waits: a full queue drops (counted in ``imchat_push_dropped_total``),
it never slows delivery. A thread of its own takes what came within
``FLUSH_SECONDS`` of the first item (at most ``MAX_MESSAGES``) and hands it
over as one ``imchat.push_notify`` job: one Celery task per batch, never one
per message. Embedded, the job runs in that thread, so a slow push service
holds up only later notifications, never a message.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING

from imchat import metrics
from imchat.services.push.notify import PUSH_NOTIFY, Unrouted

if TYPE_CHECKING:
    from imchat.container import Services

log = logging.getLogger("imchat.push")
FLUSH_SECONDS = 0.2
MAX_MESSAGES = 500
MAX_QUEUED = 50_000


class PushDispatcher:
    def __init__(self, services: Services) -> None:
        self.services = services
        self._queue: queue.Queue[Unrouted] = queue.Queue(MAX_QUEUED)
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def add(self, messages: Iterable[Unrouted]) -> None:
        """Queue messages for the next batch; never blocks."""
        self._ensure_started()
        for message in messages:
            try:
                self._queue.put_nowait(message)
            except queue.Full:
                metrics.PUSH_DROPPED.inc(len(message.users))

    def _ensure_started(self) -> None:
        if self._thread is not None:
            return
        with self._lock:
            if self._thread is None and not self._stopping.is_set():
                self._thread = threading.Thread(
                    target=self._run, name="imchat-push-dispatch", daemon=True
                )
                self._thread.start()

    def _run(self) -> None:
        while not self._stopping.is_set():
            batch = self._next_batch()
            if batch:
                self._hand_over(batch)

    def _next_batch(self) -> list[Unrouted]:
        """What arrives within FLUSH_SECONDS of the first item (up to MAX_MESSAGES)."""
        try:
            batch = [self._queue.get(timeout=0.5)]
        except queue.Empty:
            return []
        deadline = time.monotonic() + FLUSH_SECONDS
        while len(batch) < MAX_MESSAGES:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                batch.append(self._queue.get(timeout=left))
            except queue.Empty:
                break
        return batch

    def _drain(self) -> list[Unrouted]:
        batch = []
        while True:
            try:
                batch.append(self._queue.get_nowait())
            except queue.Empty:
                return batch

    def _hand_over(self, batch: list[Unrouted]) -> None:
        try:
            self.services.jobs.dispatch(PUSH_NOTIFY, {"messages": [m.to_dict() for m in batch]})
        except Exception:
            # Best effort: the messages wait as pending for the next connection.
            metrics.PUSH_DROPPED.inc(sum(len(m.users) for m in batch))
            log.warning("push batch of %d message(s) not sent", len(batch), exc_info=True)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the thread, then hand what is still queued over to Celery."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout)
        if self.services.jobs.inline:
            return  # embedded: sending now would hold the shutdown up; best effort
        rest = self._drain()
        for start in range(0, len(rest), MAX_MESSAGES):
            self._hand_over(rest[start : start + MAX_MESSAGES])
