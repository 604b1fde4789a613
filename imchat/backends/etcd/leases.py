"""The leases of this process's gateways: granted, renewed, re-created when lost.

A gateway's key and its routes hang on its lease (TTL ``etcd_lease_ttl_seconds``),
which a background loop renews every ``etcd_lease_renew_seconds``: when a
gateway process dies its routes vanish with its lease.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field

from etcd3gw.lease import Lease

from imchat.backends.base import BackendUnavailable
from imchat.backends.etcd.http import Endpoints, LeaseMissing, b64, revision
from imchat.backends.etcd.keys import ROUTE_VALUE, Keys
from imchat.backends.etcd.tree import LocalTree
from imchat.backends.etcd.watch import RETRY_MAX_SECONDS

log = logging.getLogger(__name__)

TXN_MAX_OPS = 100  # etcd refuses transactions over --max-txn-ops (128 by default)


@dataclass
class OwnGateway:
    """A gateway of this process: its lease and the users routed to it."""

    lease_id: int
    users: set[str] = field(default_factory=set)


class Leases:
    """This process's gateways, their leases and the routes written under them."""

    def __init__(
        self,
        endpoints: Endpoints,
        keys: Keys,
        tree: LocalTree,
        ttl: int,
        renew_every: float,
    ) -> None:
        self._endpoints = endpoints
        self._keys = keys
        self._tree = tree
        self._ttl = ttl
        self._renew_every = renew_every
        self._own: dict[str, OwnGateway] = {}
        self._own_lock = threading.Lock()  # guards _own and every users set, never held over I/O
        self._lease_lock = threading.Lock()  # one lease re-creation at a time

    # ------------------------------------------------------ registration
    def register(self, gateway_id: str) -> None:
        """Publish a gateway under a new lease (again under its own when registered)."""
        key = self._keys.gateway(gateway_id)
        if gateway_id in self._own:
            self._put_leased(gateway_id, key, gateway_id)
            return
        lease_id = self._grant()
        self._put(key, gateway_id, lease_id)
        with self._own_lock:
            self._own[gateway_id] = OwnGateway(lease_id)

    def unregister(self, gateway_id: str) -> None:
        """Revoke the gateway's lease: etcd deletes its key and routes at once."""
        with self._own_lock:
            own = self._own.pop(gateway_id, None)
        if own is None:
            return
        doomed = self._tree.keys_of_gateway(gateway_id)
        try:
            response = self._endpoints.post("/kv/lease/revoke", {"ID": own.lease_id})
        except LeaseMissing:
            return  # it expired already: the watch reports the deletes
        except BackendUnavailable:
            with self._own_lock:
                self._own.setdefault(gateway_id, own)  # keep renewing: the caller may retry
            raise
        self._tree.apply_own([(key, None) for key in doomed], revision(response))

    # ------------------------------------------------------------ routes
    def add_route(self, user_id: str, gateway_id: str) -> None:
        """Write the route under the gateway's lease; KeyError if it is not registered here."""
        own = self._own_gateway(gateway_id)
        # Recorded before the write, so that a lease re-creation running meanwhile rewrites it.
        with self._own_lock:
            own.users.add(user_id)
        try:
            self._put_leased(gateway_id, self._keys.route(user_id, gateway_id), ROUTE_VALUE)
        except BackendUnavailable:
            with self._own_lock:
                own.users.discard(user_id)
            raise

    def forget_route(self, user_id: str, gateway_id: str) -> None:
        """No longer rewrite the route when the gateway's lease is re-created."""
        own = self._own.get(gateway_id)
        if own is not None:
            with self._own_lock:
                own.users.discard(user_id)

    # ------------------------------------------------------------ writes
    def _own_gateway(self, gateway_id: str) -> OwnGateway:
        own = self._own.get(gateway_id)
        if own is None:
            raise KeyError(f"gateway {gateway_id} is not registered by this process")
        return own

    def _grant(self) -> int:
        return int(self._endpoints.run(lambda client: client.lease(self._ttl)).id)

    def _put(self, key: str, value: str, lease_id: int) -> None:
        payload = {"key": b64(key), "value": b64(value), "lease": lease_id}
        response = self._endpoints.post("/kv/put", payload)
        self._tree.apply_own([(key, value)], revision(response))

    def _put_leased(self, gateway_id: str, key: str, value: str) -> None:
        """Put under the gateway's lease, re-creating the lease if etcd lost it."""
        lease_id = self._own_gateway(gateway_id).lease_id
        try:
            self._put(key, value, lease_id)
        except LeaseMissing:
            self._restore(gateway_id, lease_id)
            self._put(key, value, self._own_gateway(gateway_id).lease_id)

    def _restore(self, gateway_id: str, lost_lease: int) -> None:
        """Give a gateway whose lease expired a new one and write all its keys again."""
        with self._lease_lock:
            own = self._own.get(gateway_id)
            if own is None or own.lease_id != lost_lease:
                return  # unregistered meanwhile, or restored by another caller
            log.warning(
                "etcd lease of gateway %s was lost; registering again",
                gateway_id,
                extra={"gateway_id": gateway_id},
            )
            own.lease_id = self._grant()
            with self._own_lock:
                users = sorted(own.users)
            puts = [(self._keys.gateway(gateway_id), gateway_id)]
            puts += [(self._keys.route(user, gateway_id), ROUTE_VALUE) for user in users]
            for start in range(0, len(puts), TXN_MAX_OPS):
                self._put_many(puts[start : start + TXN_MAX_OPS], own.lease_id)

    def _put_many(self, puts: list[tuple[str, str]], lease_id: int) -> None:
        ops = [
            {"request_put": {"key": b64(k), "value": b64(v), "lease": lease_id}} for k, v in puts
        ]
        response = self._endpoints.post("/kv/txn", {"success": ops})
        self._tree.apply_own(list(puts), revision(response))

    # ----------------------------------------------------------- renewal
    def renew_loop(self, stopped: threading.Event) -> None:
        """Refresh every lease of this process until stopped; retry soon after a failure."""
        delay = self._renew_every
        while not stopped.wait(delay):
            renewed = self._renew_all()
            delay = self._renew_every if renewed else min(self._renew_every, RETRY_MAX_SECONDS)

    def _renew_all(self) -> bool:
        renewed = True
        for gateway_id, own in list(self._own.items()):
            try:
                self._renew(gateway_id, own.lease_id)
            except BackendUnavailable as exc:
                log.warning(
                    "etcd lease of gateway %s not renewed: %s",
                    gateway_id,
                    exc,
                    extra={"gateway_id": gateway_id},
                )
                renewed = False
            except Exception:
                # Never let the loop die: an unrenewed lease drops every route of the gateway.
                log.exception("renewing the etcd lease of gateway %s failed", gateway_id)
                renewed = False
        return renewed

    def _renew(self, gateway_id: str, lease_id: int) -> None:
        try:
            ttl = self._endpoints.run(lambda client: Lease(lease_id, client).refresh())
        except LeaseMissing:
            ttl = -1
        if ttl <= 0:
            self._restore(gateway_id, lease_id)
