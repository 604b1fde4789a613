"""EtcdRouter: the Router on an etcd cluster, assembled from the package's parts.

Writes go to etcd under the gateway's lease (``leases``) and land in the
local tree at once; reads (``gateways_for``) never leave the process: they
use the local copy of the prefix that the watch keeps current (``watch``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from imchat.backends.base import BackendUnavailable, Router
from imchat.backends.etcd.http import REQUEST_TIMEOUT, Endpoints, b64, normalize, revision
from imchat.backends.etcd.keys import Keys
from imchat.backends.etcd.leases import Leases
from imchat.backends.etcd.probe import endpoint_health
from imchat.backends.etcd.prune import prune_stale
from imchat.backends.etcd.tree import LocalTree
from imchat.backends.etcd.watch import WATCH_IDLE_SECONDS, Watcher
from imchat.config import Settings


class EtcdRouter(Router):
    """Router on an etcd cluster (etcd3gw, the HTTP/JSON gateway)."""

    name = "etcd"

    def __init__(self, settings: Settings, *, watch_idle_seconds: float = WATCH_IDLE_SECONDS):
        """Sync the local copy (unless etcd is down) and start the watch and renewal loops."""
        if settings.etcd_lease_renew_seconds >= settings.etcd_lease_ttl_seconds:
            raise ValueError("etcd_lease_renew_seconds must be shorter than etcd_lease_ttl_seconds")
        endpoints = settings.etcd_endpoint_list
        self._endpoints = Endpoints(endpoints, REQUEST_TIMEOUT)
        # The watch gets its own HTTP sessions: its long-lived stream holds a connection.
        self._watch_endpoints = Endpoints(endpoints, REQUEST_TIMEOUT)
        self._endpoint_urls = [normalize(e) for e in endpoints]
        self._keys = Keys(settings.etcd_prefix)
        self._tree = LocalTree(self._keys)
        self._stopped = threading.Event()
        self._leases = Leases(
            self._endpoints,
            self._keys,
            self._tree,
            ttl=settings.etcd_lease_ttl_seconds,
            renew_every=float(settings.etcd_lease_renew_seconds),
        )
        self._watcher = Watcher(
            self._endpoints,
            self._watch_endpoints,
            self._keys,
            self._tree,
            self._stopped,
            watch_idle_seconds,
        )
        self._watcher.initial_sync()
        self._threads = [
            self._start(self._watcher.run, "imchat-etcd-watch"),
            self._start(lambda: self._leases.renew_loop(self._stopped), "imchat-etcd-lease"),
        ]

    @staticmethod
    def _start(target: Callable[[], None], name: str) -> threading.Thread:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        return thread

    # ------------------------------------------------------------ Router
    def register_gateway(self, gateway_id: str) -> None:
        """Publish this process's gateway under a new lease."""
        self._leases.register(gateway_id)

    def unregister_gateway(self, gateway_id: str) -> None:
        """Revoke the gateway's lease: etcd deletes its key and routes at once."""
        self._leases.unregister(gateway_id)

    def add_route(self, user_id: str, gateway_id: str) -> None:
        """Route ``user_id`` to a gateway of this process; KeyError if it is not registered."""
        self._leases.add_route(user_id, gateway_id)

    def remove_route(self, user_id: str, gateway_id: str) -> None:
        """Delete the route; harmless when it does not exist."""
        self._leases.forget_route(user_id, gateway_id)
        key = self._keys.route(user_id, gateway_id)
        response = self._endpoints.post("/kv/deleterange", {"key": b64(key)})
        self._tree.apply_own([(key, None)], revision(response))

    def gateways_for(self, user_id: str) -> set[str]:
        """The gateways holding ``user_id``'s connections (local copy, no round trip)."""
        return self._tree.gateways_for(user_id)

    def on_unrouted(self, listener: Callable[[list[str]], None]) -> None:
        """Told by the local copy: our own removals at once, other processes'
        and ended leases as the watch reports them."""
        self._tree.on_unrouted(listener)

    def prune_stale(self, limit: int) -> int:
        """Delete up to ``limit`` routes whose gateway key is missing or on another lease."""
        return prune_stale(self._endpoints, self._keys, limit)

    def ping(self, timeout: float = 2.0) -> None:
        """Raise BackendUnavailable unless some member reports itself healthy in time."""
        reasons = []
        deadline = time.monotonic() + timeout
        for index, endpoint in enumerate(self._endpoint_urls):
            # Each member gets its share of the time left, so one hanging member leaves room.
            share = max(deadline - time.monotonic(), 0.01) / (len(self._endpoint_urls) - index)
            reason = endpoint_health(endpoint, share)
            if reason is None:
                return
            reasons.append(f"{endpoint}: {reason}")
        raise BackendUnavailable("etcd", "; ".join(reasons))

    def close(self) -> None:
        """Stop the watch and the renewals; leases stay until unregistered or expired."""
        self._stopped.set()
        self._watcher.abort()
        for thread in self._threads:
            thread.join(timeout=REQUEST_TIMEOUT)
        self._endpoints.close()
        self._watch_endpoints.close()
