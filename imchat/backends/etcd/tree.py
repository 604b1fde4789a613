"""This process's copy of the router keys: ``gateways_for`` never leaves the process."""

from __future__ import annotations

import threading
from collections.abc import Callable

from imchat.backends.etcd.keys import Keys

Change = tuple[str, str | None]  # (key, value), value None for a delete
Event = tuple[str, str | None, int]  # (key, value or None, revision) from the watch


class LocalTree:
    """This process's copy of the router keys, fed by the watch and by our own writes.

    Each key remembers the revision that last wrote it, so a late event never
    undoes a newer one: our own writes land before the watch reports them,
    while the watch may still be replaying older events of the same key.
    """

    def __init__(self, keys: Keys) -> None:
        self._keys = keys
        self._lock = threading.Lock()
        self.revision = 0  # every event up to this revision is applied (0: never synced)
        self.cluster_id = ""
        self._values: dict[str, tuple[int, str]] = {}
        self._tombstones: dict[str, int] = {}  # our own deletes the watch has not reached
        self._routes: dict[str, set[str]] = {}
        self._listeners: list[Callable[[list[str]], None]] = []
        self._unrouted: list[str] = []  # users left without a route by the current change

    # ---- reads
    def gateways_for(self, user_id: str) -> set[str]:
        with self._lock:
            return set(self._routes.get(user_id, ()))

    def keys_of_gateway(self, gateway_id: str) -> list[str]:
        """The gateway's own key and the key of every route to it."""
        with self._lock:
            users = [u for u, gateways in self._routes.items() if gateway_id in gateways]
        keys = self._keys
        return [keys.gateway(gateway_id)] + [keys.route(u, gateway_id) for u in users]

    def on_unrouted(self, listener: Callable[[list[str]], None]) -> None:
        """Call ``listener`` with the users a change leaves without any route."""
        self._listeners.append(listener)

    # ---- writes
    def apply_events(self, events: list[Event]) -> None:
        """Apply watch events in order."""
        with self._lock:
            for key, value, revision in events:
                self._apply(key, value, revision)
            self._advance(max(revision for _, _, revision in events))
        self._tell()

    def apply_own(self, changes: list[Change], revision: int) -> None:
        """Apply our own writes of ``revision`` now, unless the watch already has them."""
        with self._lock:
            if revision <= self.revision:
                return  # the watch applied it, and maybe later changes of the same keys
            for key, value in changes:
                if value is None:
                    self._tombstones[key] = max(revision, self._tombstones.get(key, 0))
                self._apply(key, value, revision)
        self._tell()

    def progress(self, revision: int) -> None:
        """The watch reports that every event up to ``revision`` was sent."""
        with self._lock:
            self._advance(revision)

    def replace(
        self, snapshot: dict[str, tuple[int, str]], revision: int, cluster_id: str, hard: bool
    ) -> None:
        """Adopt a snapshot taken at ``revision``; keep our newer writes unless ``hard``."""
        with self._lock:
            other_cluster = bool(self.cluster_id) and cluster_id != self.cluster_id
            merged = dict(snapshot)
            if hard or other_cluster:
                self._tombstones = {}
            else:
                self._keep_newer(merged, revision)
            self._values = merged
            self.revision = revision
            self.cluster_id = cluster_id
            routed = set(self._routes)
            self._reindex()
            self._unrouted.extend(sorted(routed - set(self._routes)))
        self._tell()

    def _keep_newer(self, merged: dict[str, tuple[int, str]], revision: int) -> None:
        for key, entry in self._values.items():
            if entry[0] > revision:
                merged[key] = entry
        self._tombstones = {k: r for k, r in self._tombstones.items() if r > revision}
        for key, deleted_at in self._tombstones.items():
            if key in merged and merged[key][0] < deleted_at:
                del merged[key]

    def _apply(self, key: str, value: str | None, revision: int) -> None:
        current = self._values.get(key)
        newest = max(current[0] if current else 0, self._tombstones.get(key, 0))
        if revision < newest:
            return
        if value is not None:
            self._values[key] = (revision, value)
            self._index(key)
        elif current is not None:
            del self._values[key]
            self._unindex(key)

    def _advance(self, revision: int) -> None:
        if revision <= self.revision:
            return
        self.revision = revision
        if self._tombstones:
            self._tombstones = {k: r for k, r in self._tombstones.items() if r > revision}

    def _reindex(self) -> None:
        self._routes = {}
        for key in self._values:
            self._index(key)

    def _route(self, key: str) -> tuple[str, str] | None:
        """(gateway_id, user_id) when ``key`` is a route; gateway keys need no index."""
        parsed = self._keys.parse(key)
        if parsed is None or parsed[1] is None:
            return None
        return parsed[0], parsed[1]

    def _index(self, key: str) -> None:
        route = self._route(key)
        if route is not None:
            gateway_id, user_id = route
            self._routes.setdefault(user_id, set()).add(gateway_id)

    def _unindex(self, key: str) -> None:
        route = self._route(key)
        if route is None:
            return
        gateway_id, user_id = route
        gateways = self._routes.get(user_id)
        if gateways is not None:
            gateways.discard(gateway_id)
            if not gateways:
                del self._routes[user_id]
                self._unrouted.append(user_id)

    def _tell(self) -> None:
        """Hand the users the last change left without a route to the listeners
        (outside the lock: a listener may read the tree)."""
        with self._lock:
            unrouted, self._unrouted = self._unrouted, []
        if unrouted:
            for listener in self._listeners:
                listener(unrouted)
