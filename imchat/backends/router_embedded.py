"""Embedded twin of the etcd router: one process, so routes live in memory.

Routes need not survive a restart: a restarted process holds no connections.
"""

from __future__ import annotations

import threading
from collections import defaultdict

from imchat.backends.base import Router


class EmbeddedRouter(Router):
    name = "etcd (embedded)"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._gateways: dict[str, str] = {}
        self._routes: defaultdict[str, set[str]] = defaultdict(set)

    def register_gateway(self, gateway_id: str, address: str) -> None:
        with self._lock:
            self._gateways[gateway_id] = address

    def unregister_gateway(self, gateway_id: str) -> None:
        with self._lock:
            self._gateways.pop(gateway_id, None)
            for user_id in [u for u, gws in self._routes.items() if gateway_id in gws]:
                self._drop(user_id, gateway_id)

    def add_route(self, user_id: str, gateway_id: str) -> None:
        with self._lock:
            if gateway_id not in self._gateways:
                raise KeyError(f"gateway {gateway_id} is not registered")
            self._routes[user_id].add(gateway_id)

    def remove_route(self, user_id: str, gateway_id: str) -> None:
        with self._lock:
            self._drop(user_id, gateway_id)

    def _drop(self, user_id: str, gateway_id: str) -> None:
        gateways = self._routes.get(user_id)
        if gateways is not None:
            gateways.discard(gateway_id)
            if not gateways:
                del self._routes[user_id]

    def gateways_for(self, user_id: str) -> set[str]:
        with self._lock:
            return set(self._routes.get(user_id, ()))

    def live_gateways(self) -> dict[str, str]:
        with self._lock:
            return dict(self._gateways)

    def ping(self, timeout: float = 2.0) -> None:
        return None
