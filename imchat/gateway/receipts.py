"""``receipt`` frames: a participant's marks moved, coalesced per second.

A ``delivered`` or ``read`` frame notes its marks here; at most once a second
per user and conversation (the first at once, the latest marks after the
window) this gateway sends a ``receipt`` to the user's other connections and
to the other participants: the peer of a direct conversation (delivered and
read), the members of a group of up to ``GROUP_RECEIPTS_MAX`` (read only).
Receipts are a courtesy, not a guarantee: one lost with the gateway is
superseded by the next, and history always has the marks.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from imchat.services import groups
from imchat.services.delivery.outbox import Outbox
from imchat.stores import conversations as conversation_store
from imchat.wire.frames import ReceiptFrame
from imchat.wire.ids import group_of

if TYPE_CHECKING:
    from imchat.container import Services

log = logging.getLogger("imchat.gateway")
WINDOW_SECONDS = 1.0
TICK_SECONDS = 0.1
GROUP_RECEIPTS_MAX = 100


@dataclass
class _Due:
    delivered: int
    read: int
    read_moved: bool
    # The connection whose frame moved the marks last: it knows them already.
    conn_id: str | None


class ReceiptCoalescer:
    """``elsewhere(user_id, conn_id)`` says whether the user has a connection
    other than ``conn_id``: a group's delivered mark interests nobody else, so
    without one its receipt (a database read) is not worth making."""

    def __init__(self, services: Services, elsewhere: Callable[[str, str | None], bool]) -> None:
        self.services = services
        self.elsewhere = elsewhere
        self._lock = threading.Lock()
        self._due: dict[tuple[str, str], _Due] = {}
        self._sent_at: dict[tuple[str, str], float] = {}
        # The marks each key's last receipt carried: a frame that moves nothing
        # (a lower seq, a repeated confirmation) tells nobody anything new.
        self._sent_marks: dict[tuple[str, str], tuple[int, int]] = {}
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="imchat-receipts", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(timeout=2)

    def note(
        self, user_id: str, conversation_id: str, delivered: int, read: int, conn_id: str | None
    ) -> None:
        key = (user_id, conversation_id)
        with self._lock:
            due = self._due.setdefault(key, _Due(0, 0, False, conn_id))
            due.delivered = max(due.delivered, delivered, read)
            due.read_moved = due.read_moved or read > due.read
            due.read = max(due.read, read)
            due.conn_id = conn_id

    def flush(self, now: float | None = None) -> int:
        """Send what is due and out of its window; the number of receipts sent."""
        now = time.monotonic() if now is None else now
        with self._lock:
            ready = {
                k: d
                for k, d in self._due.items()
                if now - self._sent_at.get(k, float("-inf")) >= WINDOW_SECONDS
            }
            for key in ready:
                del self._due[key]
                self._sent_at[key] = now
            self._forget_old(now)
        wanted = {k: d for k, d in ready.items() if self._wanted(k, d)}
        if wanted:
            self._send(wanted)
        return len(wanted)

    def _wanted(self, key: tuple[str, str], due: _Due) -> bool:
        user_id, conversation_id = key
        if due.read_moved or group_of(conversation_id) is None:
            return True
        return self.elsewhere(user_id, due.conn_id)

    def _forget_old(self, now: float) -> None:
        if len(self._sent_at) > 10_000:
            self._sent_at = {k: t for k, t in self._sent_at.items() if now - t < WINDOW_SECONDS}
            self._sent_marks = {k: m for k, m in self._sent_marks.items() if k in self._sent_at}

    def _moved(self, key: tuple[str, str], frame: ReceiptFrame) -> bool:
        """Whether ``frame`` carries other marks than the key's last receipt (and remember it)."""
        marks = (frame.delivered_seq, frame.read_seq)
        with self._lock:
            if self._sent_marks.get(key) == marks:
                return False
            self._sent_marks[key] = marks
        return True

    def _send(self, ready: dict[tuple[str, str], _Due]) -> None:
        outbox = Outbox(self.services)
        with self.services.db.session() as session:
            for (user_id, conversation_id), due in ready.items():
                member = conversation_store.membership(session, user_id, conversation_id)
                if member is None or member.left_seq is not None:
                    continue  # not theirs: nobody hears of it
                frame = ReceiptFrame(
                    conversation_id,
                    user_id,
                    max(member.delivered_seq, due.delivered),
                    max(member.read_seq, due.read),
                )
                if not self._moved((user_id, conversation_id), frame):
                    continue
                audience = self._audience(member, due)
                outbox.push_frame(frame.to_dict(), audience, exclude_conn=due.conn_id)
        outbox.send()

    def _audience(self, member: conversation_store.Membership, due: _Due) -> list[str]:
        """The user (for their other connections) and the participants who hear of it."""
        if member.peer_id is not None:
            return [member.user_id, member.peer_id]
        group_id = group_of(member.conversation_id) or ""
        others = groups.member_ids(self.services, group_id) or []
        if not due.read_moved or len(others) > GROUP_RECEIPTS_MAX:
            return [member.user_id]
        return list(dict.fromkeys([member.user_id, *others]))

    def _run(self) -> None:
        while not self._stopping.wait(TICK_SECONDS):
            try:
                self.flush()
            except Exception:
                log.warning("receipts not sent", exc_info=True)
