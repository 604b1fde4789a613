"""At most one event per key per window, in this process (no shared state)."""

from __future__ import annotations

import threading
import time

FORGET_AFTER = 10_000


class Throttle:
    """``allow(key)`` is True for the first call of a key in each ``window`` seconds."""

    def __init__(self, window: float) -> None:
        self.window = window
        self._lock = threading.Lock()
        self._last: dict[tuple[str, str], float] = {}

    def allow(self, key: tuple[str, str], now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        with self._lock:
            last = self._last.get(key)
            if last is not None and now - last < self.window:
                return False
            if len(self._last) >= FORGET_AFTER:
                # Bounded: only keys still inside their window matter.
                self._last = {k: t for k, t in self._last.items() if now - t < self.window}
            self._last[key] = now
            return True
