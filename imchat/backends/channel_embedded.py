"""Embedded twin of the per-gateway channel: a direct call within the process."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

from imchat.backends.base import GatewayChannel


class EmbeddedChannel(GatewayChannel):
    name = "channel (embedded)"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._listeners: dict[str, Callable[[bytes], None]] = {}

    def send_many(self, deliveries: Sequence[tuple[str, bytes]]) -> None:
        with self._lock:
            listeners = dict(self._listeners)
        for gateway_id, payload in deliveries:
            listener = listeners.get(gateway_id)
            if listener is not None:
                listener(payload)

    def listen(self, gateway_id: str, on_payload: Callable[[bytes], None]) -> None:
        with self._lock:
            self._listeners[gateway_id] = on_payload

    def stop_listening(self, gateway_id: str) -> None:
        with self._lock:
            self._listeners.pop(gateway_id, None)
