"""Embedded twin of the etcd router: one process, so routes live in memory.

Routes need not survive a restart: a restarted process holds no connections.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Callable

from imchat.backends.base import Router


class EmbeddedRouter(Router):
    name = "etcd (embedded)"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._gateways: set[str] = set()
        self._routes: defaultdict[str, set[str]] = defaultdict(set)
        self._listeners: list[Callable[[list[str]], None]] = []

    def register_gateway(self, gateway_id: str) -> None:
        with self._lock:
            self._gateways.add(gateway_id)

    def unregister_gateway(self, gateway_id: str) -> None:
        with self._lock:
            self._gateways.discard(gateway_id)
            users = [u for u, gws in self._routes.items() if gateway_id in gws]
            unrouted = [u for u in users if self._drop(u, gateway_id)]
        self._tell(unrouted)

    def add_route(self, user_id: str, gateway_id: str) -> None:
        with self._lock:
            if gateway_id not in self._gateways:
                raise KeyError(f"gateway {gateway_id} is not registered")
            self._routes[user_id].add(gateway_id)

    def remove_route(self, user_id: str, gateway_id: str) -> None:
        with self._lock:
            unrouted = self._drop(user_id, gateway_id)
        self._tell([user_id] if unrouted else [])

    def on_unrouted(self, listener: Callable[[list[str]], None]) -> None:
        self._listeners.append(listener)

    def _drop(self, user_id: str, gateway_id: str) -> bool:
        """Remove one route; whether it was the user's last one."""
        gateways = self._routes.get(user_id)
        if gateways is None or gateway_id not in gateways:
            return False
        gateways.discard(gateway_id)
        if gateways:
            return False
        del self._routes[user_id]
        return True

    def _tell(self, user_ids: list[str]) -> None:
        if user_ids:
            for listener in self._listeners:
                listener(user_ids)

    def gateways_for(self, user_id: str) -> set[str]:
        with self._lock:
            return set(self._routes.get(user_id, ()))

    def prune_stale(self, limit: int) -> int:
        """Drop up to ``limit`` routes to a gateway that is not registered.

        The twin's own methods never leave one (a gateway's routes go with it),
        so this finds nothing unless something wrote past them.
        """
        with self._lock:
            stale = [
                (user_id, gateway_id)
                for user_id, gateways in sorted(self._routes.items())
                for gateway_id in sorted(gateways)
                if gateway_id not in self._gateways
            ][:limit]
            unrouted = [u for u, gateway_id in stale if self._drop(u, gateway_id)]
        self._tell(unrouted)
        return len(stale)

    def ping(self, timeout: float = 2.0) -> None:
        return None
