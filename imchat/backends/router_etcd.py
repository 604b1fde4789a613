"""etcd adapter of the Router: gateway registrations and user routes under leases.

Keys under ``settings.etcd_prefix`` (P)::

    P/gateways/{gateway_id}          -> the gateway's address
    P/routes/{user_id}/{gateway_id}  -> "1"

Both hang on the gateway's lease (TTL ``etcd_lease_ttl_seconds``), which a
background loop renews every ``etcd_lease_renew_seconds``: when a gateway
process dies its routes vanish with its lease. Reads (``gateways_for``,
``live_gateways``) never leave the process: they use a local copy of ``P/``
kept current by a watch. The watch is our own long poll of etcd's HTTP
gateway rather than etcd3gw's ``watch_prefix``, whose iterator silently stops
for good after an etcd restart: ours resumes from the last applied revision
and resyncs from a range read when that revision was compacted or the answer
contradicts the local copy.

Blocking calls go through ``requests`` and waits through ``threading``, so the
same code runs in plain threads and in greenlets after gevent's monkey patching.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import quote, unquote, urlsplit

import requests
from etcd3gw import exceptions as etcd_errors
from etcd3gw.client import Etcd3Client
from etcd3gw.lease import Lease
from urllib3.exceptions import ReadTimeoutError

from imchat.backends.base import BackendUnavailable, Router
from imchat.config import Settings

log = logging.getLogger(__name__)

T = TypeVar("T")

REQUEST_TIMEOUT = 3.0  # one etcd call; past it the next endpoint is tried
# A silent watch is reopened after this long: a half-open TCP connection (a
# partitioned node) raises no error, it just never delivers again.
WATCH_IDLE_SECONDS = 10.0
RANGE_PAGE_SIZE = 1000
TXN_MAX_OPS = 100  # etcd refuses transactions over --max-txn-ops (128 by default)
RETRY_MIN_SECONDS = 0.1
RETRY_MAX_SECONDS = 2.0
ROUTE_VALUE = "1"
_LEASE_NOT_FOUND = "requested lease not found"

# Failures of the endpoint rather than of the request: the next endpoint may answer.
_TRANSPORT_ERRORS = (
    etcd_errors.ConnectionFailedError,
    etcd_errors.ConnectionTimeoutError,
    etcd_errors.InternalServerError,
    etcd_errors.ApiVersionDiscoveryFailedError,
    requests.RequestException,
)


class _LeaseMissing(BackendUnavailable):
    """etcd no longer knows the lease: it expired (or the cluster was replaced).

    Handled inside the adapter by re-creating the lease; should one escape, callers
    see an ordinary BackendUnavailable.
    """

    def __init__(self) -> None:
        super().__init__("etcd", "the gateway's lease is gone")


class _WatchCompacted(Exception):
    """The revision to resume from is compacted away: resync from a snapshot."""


class _WatchDoubt(Exception):
    """The watch contradicts the local copy (other cluster, older store): resync all."""


class _WatchEnded(Exception):
    """The watch stream ended or etcd cancelled it: reopen it after a pause."""


# ------------------------------------------------------------------ helpers
def _b64(data: str | bytes) -> str:
    raw = data.encode("utf-8") if isinstance(data, str) else data
    return base64.b64encode(raw).decode("ascii")


def _text(data: str) -> str:
    return base64.b64decode(data).decode("utf-8", "replace")


def _range_end(prefix: str) -> str:
    """The range_end that selects every key starting with ``prefix``."""
    raw = prefix.encode("utf-8")
    return _b64(raw[:-1] + bytes([raw[-1] + 1]))


def _revision(response: dict[str, Any]) -> int:
    return int(response.get("header", {}).get("revision", 0))


def _describe(exc: BaseException) -> str:
    detail = getattr(exc, "detail_text", None) or str(exc) or type(exc).__name__
    return str(detail).strip()[:300]


def _normalize(endpoint: str) -> str:
    endpoint = endpoint.strip().rstrip("/")
    return endpoint if "://" in endpoint else f"http://{endpoint}"


def _make_client(endpoint: str, timeout: float) -> Etcd3Client:
    url = urlsplit(_normalize(endpoint))
    # No proxy or netrc lookups in the environment on every call (~1 ms each):
    # etcd is reached directly.
    session = requests.Session()
    session.trust_env = False
    return Etcd3Client(
        host=url.hostname or "127.0.0.1",
        port=url.port or 2379,
        protocol=url.scheme,
        timeout=timeout,
        session=session,
    )


def _is_idle_timeout(exc: BaseException) -> bool:
    # requests wraps urllib3's read timeout of a streamed body in a ConnectionError.
    return any(isinstance(arg, ReadTimeoutError) for arg in exc.args)


def endpoint_health(endpoint: str, timeout: float) -> str | None:
    """None when the etcd member at ``endpoint`` reports itself healthy, else the reason."""
    try:
        response = requests.get(_normalize(endpoint) + "/health", timeout=timeout)
    except requests.RequestException as exc:
        return f"{type(exc).__name__}: {_describe(exc)}"
    try:
        body = response.json()
    except ValueError:
        body = None
    if response.status_code == 200 and isinstance(body, dict) and body.get("health") == "true":
        return None
    return f"HTTP {response.status_code}: {response.text.strip()[:200]}"


class _Backoff:
    """Doubling pauses between reconnection attempts, reset once a watch is up."""

    def __init__(self) -> None:
        self._delay = RETRY_MIN_SECONDS

    def reset(self) -> None:
        self._delay = RETRY_MIN_SECONDS

    def next(self) -> float:
        delay = self._delay
        self._delay = min(delay * 2, RETRY_MAX_SECONDS)
        return delay


class _Endpoints:
    """One etcd3gw client per cluster member; a call that cannot reach one tries the next."""

    def __init__(self, endpoints: list[str], timeout: float) -> None:
        if not endpoints:
            raise ValueError("no etcd endpoint configured (IMCHAT_ETCD_ENDPOINTS)")
        self._clients = [_make_client(endpoint, timeout) for endpoint in endpoints]
        self._current = 0  # the member that answered last: tried first

    def run(self, op: Callable[[Etcd3Client], T]) -> T:
        """``op`` on the first member that answers; BackendUnavailable when none does."""
        failures = []
        for attempt in range(len(self._clients)):
            index = (self._current + attempt) % len(self._clients)
            client = self._clients[index]
            try:
                result = op(client)
            except _TRANSPORT_ERRORS as exc:
                failures.append(f"{client.base_url}: {_describe(exc)}")
                continue
            except etcd_errors.Etcd3Exception as exc:
                if _LEASE_NOT_FOUND in (exc.detail_text or ""):
                    raise _LeaseMissing() from exc
                raise BackendUnavailable("etcd", _describe(exc)) from exc
            self._current = index
            return result
        raise BackendUnavailable("etcd", "; ".join(failures))

    def post(self, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        """POST ``payload`` to the v3 JSON API; the decoded answer."""
        return self.run(lambda client: client.post(client.get_url(path), json=payload))

    def close(self) -> None:
        for client in self._clients:
            client.session.close()


# --------------------------------------------------------------- the keys
class _Keys:
    """Key layout. Ids are percent-quoted so that a '/' in one cannot shift the parts."""

    def __init__(self, prefix: str) -> None:
        self.root = prefix.rstrip("/") + "/"

    def gateway(self, gateway_id: str) -> str:
        return f"{self.root}gateways/{quote(gateway_id, safe='')}"

    def route(self, user_id: str, gateway_id: str) -> str:
        return f"{self.root}routes/{quote(user_id, safe='')}/{quote(gateway_id, safe='')}"

    def parse(self, key: str) -> tuple[str, str | None] | None:
        """(gateway_id, None) for a gateway key, (gateway_id, user_id) for a route."""
        if not key.startswith(self.root):
            return None
        parts = key[len(self.root) :].split("/")
        if parts[0] == "gateways" and len(parts) == 2:
            return unquote(parts[1]), None
        if parts[0] == "routes" and len(parts) == 3:
            return unquote(parts[2]), unquote(parts[1])
        return None


# ---------------------------------------------------------- the local copy
Change = tuple[str, str | None]  # (key, value), value None for a delete


class _LocalTree:
    """This process's copy of the router keys, fed by the watch and by our own writes.

    Each key remembers the revision that last wrote it, so a late event never
    undoes a newer one: our own writes land before the watch reports them,
    while the watch may still be replaying older events of the same key.
    """

    def __init__(self, keys: _Keys) -> None:
        self._keys = keys
        self._lock = threading.Lock()
        self.revision = 0  # every event up to this revision is applied (0: never synced)
        self.cluster_id = ""
        self._values: dict[str, tuple[int, str]] = {}
        self._tombstones: dict[str, int] = {}  # our own deletes the watch has not reached
        self._gateways: dict[str, str] = {}
        self._routes: dict[str, set[str]] = {}

    # ---- reads
    def gateways_for(self, user_id: str) -> set[str]:
        with self._lock:
            return set(self._routes.get(user_id, ()))

    def live_gateways(self) -> dict[str, str]:
        with self._lock:
            return dict(self._gateways)

    def keys_of_gateway(self, gateway_id: str, keys: _Keys) -> list[str]:
        """The gateway's own key and the key of every route to it."""
        with self._lock:
            users = [u for u, gateways in self._routes.items() if gateway_id in gateways]
        return [keys.gateway(gateway_id)] + [keys.route(u, gateway_id) for u in users]

    # ---- writes
    def apply_events(self, events: list[tuple[str, str | None, int]]) -> None:
        """Apply watch events (key, value or None, revision) in order."""
        with self._lock:
            for key, value, revision in events:
                self._apply(key, value, revision)
            self._advance(max(revision for _, _, revision in events))

    def apply_own(self, changes: list[Change], revision: int) -> None:
        """Apply our own writes of ``revision`` now, unless the watch already has them."""
        with self._lock:
            if revision <= self.revision:
                return  # the watch applied it, and maybe later changes of the same keys
            for key, value in changes:
                if value is None:
                    self._tombstones[key] = max(revision, self._tombstones.get(key, 0))
                self._apply(key, value, revision)

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
            self._reindex()

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
            self._index(key, value)
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
        self._gateways = {}
        self._routes = {}
        for key, (_, value) in self._values.items():
            self._index(key, value)

    def _index(self, key: str, value: str) -> None:
        parsed = self._keys.parse(key)
        if parsed is None:
            return
        gateway_id, user_id = parsed
        if user_id is None:
            self._gateways[gateway_id] = value
        else:
            self._routes.setdefault(user_id, set()).add(gateway_id)

    def _unindex(self, key: str) -> None:
        parsed = self._keys.parse(key)
        if parsed is None:
            return
        gateway_id, user_id = parsed
        if user_id is None:
            self._gateways.pop(gateway_id, None)
            return
        gateways = self._routes.get(user_id)
        if gateways is not None:
            gateways.discard(gateway_id)
            if not gateways:
                del self._routes[user_id]


@dataclass
class _OwnGateway:
    """A gateway of this process: its lease and the users routed to it."""

    address: str
    lease_id: int
    users: set[str] = field(default_factory=set)


# ------------------------------------------------------------- the router
class EtcdRouter(Router):
    """Router on an etcd cluster (etcd3gw, the HTTP/JSON gateway)."""

    name = "etcd"

    def __init__(self, settings: Settings, *, watch_idle_seconds: float = WATCH_IDLE_SECONDS):
        """Sync the local copy (unless etcd is down) and start the watch and renewal loops."""
        if settings.etcd_lease_renew_seconds >= settings.etcd_lease_ttl_seconds:
            raise ValueError("etcd_lease_renew_seconds must be shorter than etcd_lease_ttl_seconds")
        self._endpoints = _Endpoints(settings.etcd_endpoint_list, REQUEST_TIMEOUT)
        # The watch gets its own HTTP sessions: its long-lived stream holds a connection.
        self._watch_endpoints = _Endpoints(settings.etcd_endpoint_list, REQUEST_TIMEOUT)
        self._endpoint_urls = [_normalize(e) for e in settings.etcd_endpoint_list]
        self._keys = _Keys(settings.etcd_prefix)
        self._tree = _LocalTree(self._keys)
        self._ttl = settings.etcd_lease_ttl_seconds
        self._renew_every = float(settings.etcd_lease_renew_seconds)
        self._watch_idle = watch_idle_seconds
        self._own: dict[str, _OwnGateway] = {}
        self._own_lock = threading.Lock()  # guards _own and every users set, never held over I/O
        self._lease_lock = threading.Lock()  # one lease re-creation at a time
        self._stopped = threading.Event()
        self._watch_lock = threading.Lock()
        self._watch_response: requests.Response | None = None
        self._retry = _Backoff()
        self._initial_sync()
        self._threads = [
            self._start(self._watch_loop, "imchat-etcd-watch"),
            self._start(self._renew_loop, "imchat-etcd-lease"),
        ]

    # ------------------------------------------------------------ Router
    def register_gateway(self, gateway_id: str, address: str) -> None:
        """Publish this process's gateway under a new lease (or update its address)."""
        existing = self._own.get(gateway_id)
        if existing is not None:
            existing.address = address
            self._put_leased(gateway_id, self._keys.gateway(gateway_id), address)
            return
        lease_id = self._endpoints.run(lambda client: client.lease(self._ttl)).id
        self._put(self._keys.gateway(gateway_id), address, lease_id)
        with self._own_lock:
            self._own[gateway_id] = _OwnGateway(address, lease_id)

    def unregister_gateway(self, gateway_id: str) -> None:
        """Revoke the gateway's lease: etcd deletes its key and routes at once."""
        with self._own_lock:
            own = self._own.pop(gateway_id, None)
        if own is None:
            return
        doomed = self._tree.keys_of_gateway(gateway_id, self._keys)
        try:
            response = self._endpoints.post("/kv/lease/revoke", {"ID": own.lease_id})
        except _LeaseMissing:
            return  # it expired already: the watch reports the deletes
        except BackendUnavailable:
            with self._own_lock:
                self._own.setdefault(gateway_id, own)  # keep renewing: the caller may retry
            raise
        self._tree.apply_own([(key, None) for key in doomed], _revision(response))

    def add_route(self, user_id: str, gateway_id: str) -> None:
        """Route ``user_id`` to a gateway of this process; KeyError if it is not registered."""
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

    def remove_route(self, user_id: str, gateway_id: str) -> None:
        """Delete the route; harmless when it does not exist."""
        own = self._own.get(gateway_id)
        if own is not None:
            with self._own_lock:
                own.users.discard(user_id)
        key = self._keys.route(user_id, gateway_id)
        response = self._endpoints.post("/kv/deleterange", {"key": _b64(key)})
        self._tree.apply_own([(key, None)], _revision(response))

    def gateways_for(self, user_id: str) -> set[str]:
        """The gateways holding ``user_id``'s connections (local copy, no round trip)."""
        return self._tree.gateways_for(user_id)

    def live_gateways(self) -> dict[str, str]:
        """gateway_id -> address of every gateway holding a live lease (local copy)."""
        return self._tree.live_gateways()

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
        self._abort_watch()
        for thread in self._threads:
            thread.join(timeout=REQUEST_TIMEOUT)
        self._endpoints.close()
        self._watch_endpoints.close()

    # ---------------------------------------------------------- writes
    def _own_gateway(self, gateway_id: str) -> _OwnGateway:
        own = self._own.get(gateway_id)
        if own is None:
            raise KeyError(f"gateway {gateway_id} is not registered by this process")
        return own

    def _put(self, key: str, value: str, lease_id: int) -> None:
        payload = {"key": _b64(key), "value": _b64(value), "lease": lease_id}
        response = self._endpoints.post("/kv/put", payload)
        self._tree.apply_own([(key, value)], _revision(response))

    def _put_leased(self, gateway_id: str, key: str, value: str) -> None:
        """Put under the gateway's lease, re-creating the lease if etcd lost it."""
        lease_id = self._own_gateway(gateway_id).lease_id
        try:
            self._put(key, value, lease_id)
        except _LeaseMissing:
            self._restore_lease(gateway_id, lease_id)
            self._put(key, value, self._own_gateway(gateway_id).lease_id)

    def _restore_lease(self, gateway_id: str, lost_lease: int) -> None:
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
            own.lease_id = self._endpoints.run(lambda client: client.lease(self._ttl)).id
            with self._own_lock:
                users = sorted(own.users)
            puts = [(self._keys.gateway(gateway_id), own.address)]
            puts += [(self._keys.route(user, gateway_id), ROUTE_VALUE) for user in users]
            for start in range(0, len(puts), TXN_MAX_OPS):
                self._put_many(puts[start : start + TXN_MAX_OPS], own.lease_id)

    def _put_many(self, puts: list[tuple[str, str]], lease_id: int) -> None:
        ops = [
            {"request_put": {"key": _b64(k), "value": _b64(v), "lease": lease_id}} for k, v in puts
        ]
        response = self._endpoints.post("/kv/txn", {"success": ops})
        self._tree.apply_own(list(puts), _revision(response))

    # ---------------------------------------------------------- renewal
    def _renew_loop(self) -> None:
        """Refresh every lease of this process until close(); retry soon after a failure."""
        delay = self._renew_every
        while not self._stopped.wait(delay):
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
        except _LeaseMissing:
            ttl = -1
        if ttl <= 0:
            self._restore_lease(gateway_id, lease_id)

    # ------------------------------------------------------------ watch
    def _start(self, target: Callable[[], None], name: str) -> threading.Thread:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        return thread

    def _initial_sync(self) -> None:
        try:
            self._sync(hard=False)
        except BackendUnavailable as exc:
            # Start anyway: the watch loop keeps trying, /readyz reports etcd meanwhile.
            log.warning("etcd unreachable at start, routes will sync in the background: %s", exc)

    def _sync(self, hard: bool) -> None:
        """Replace the local copy by a snapshot of the prefix, paged at one revision."""
        snapshot: dict[str, tuple[int, str]] = {}
        payload: dict[str, Any] = {
            "key": _b64(self._keys.root),
            "range_end": _range_end(self._keys.root),
            "limit": RANGE_PAGE_SIZE,
        }
        while True:
            response = self._endpoints.post("/kv/range", payload)
            payload.setdefault("revision", _revision(response))
            kvs = response.get("kvs", [])
            for kv in kvs:
                snapshot[_text(kv["key"])] = (int(kv["mod_revision"]), _text(kv.get("value", "")))
            if not kvs or not response.get("more"):
                break
            payload["key"] = _b64(base64.b64decode(kvs[-1]["key"]) + b"\0")
        cluster_id = str(response.get("header", {}).get("cluster_id", ""))
        self._tree.replace(snapshot, payload["revision"], cluster_id, hard)

    def _watch_loop(self) -> None:
        """Keep the local copy current until close(): follow, reconnect, resync."""
        pending_sync = self._tree.revision == 0
        hard = False
        while not self._stopped.is_set():
            try:
                if pending_sync:
                    self._sync(hard)
                    pending_sync = hard = False
                self._follow()
            except _WatchCompacted as exc:
                log.info("etcd watch revision %s was compacted; resyncing", exc)
                pending_sync = True
            except _WatchDoubt as exc:
                log.warning("etcd watch contradicts the local copy (%s); resyncing", exc)
                pending_sync = hard = True
            except (BackendUnavailable, _WatchEnded, requests.RequestException, OSError) as exc:
                if not self._stopped.is_set():
                    log.warning("etcd watch interrupted, reconnecting: %s", _describe(exc))
                self._stopped.wait(self._retry.next())
            except Exception:
                # Never let the loop die: a dead watch means a silently stale copy.
                log.exception("etcd watch failed; reconnecting")
                self._stopped.wait(self._retry.next())

    def _follow(self) -> None:
        """Apply watch events from the last applied revision until the stream ends."""
        response = self._watch_endpoints.run(self._open_watch)
        with self._watch_lock:
            if self._stopped.is_set():
                response.close()
                return
            self._watch_response = response
        try:
            for result in self._results(response):
                self._on_result(result)
        except requests.ConnectionError as exc:
            if _is_idle_timeout(exc):
                return  # quiet for a while: reopen, in case the connection is half-open
            raise
        finally:
            with self._watch_lock:
                self._watch_response = None
            response.close()
        raise _WatchEnded("the watch stream ended")

    def _open_watch(self, client: Etcd3Client) -> requests.Response:
        create: dict[str, Any] = {
            "key": _b64(self._keys.root),
            "range_end": _range_end(self._keys.root),
            "start_revision": self._tree.revision + 1,
            "progress_notify": True,
        }
        response = client.session.post(
            client.get_url("/watch"),
            json={"create_request": create},
            stream=True,
            timeout=(REQUEST_TIMEOUT, self._watch_idle),
        )
        if response.status_code != 200:
            detail = response.text
            response.close()
            raise etcd_errors.ConnectionFailedError(detail)
        return response

    @staticmethod
    def _results(response: requests.Response) -> Iterator[dict[str, Any]]:
        """The watch responses of the stream, one JSON document per line."""
        buffer = b""
        for chunk in response.iter_content(chunk_size=None):
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                if not line.strip():
                    continue
                message = json.loads(line)
                if "result" not in message:
                    raise _WatchEnded(f"etcd watch error: {message}")
                yield message["result"]

    def _on_result(self, result: dict[str, Any]) -> None:
        header = result.get("header", {})
        cluster_id = str(header.get("cluster_id", ""))
        if self._tree.cluster_id and cluster_id and cluster_id != self._tree.cluster_id:
            raise _WatchDoubt(f"cluster id {cluster_id}, was {self._tree.cluster_id}")
        if result.get("created"):
            if _revision(result) < self._tree.revision:
                raise _WatchDoubt(f"store at revision {_revision(result)}, copy at later one")
            self._retry.reset()
        elif result.get("canceled"):
            compacted = int(result.get("compact_revision", 0))
            if compacted:
                raise _WatchCompacted(compacted)
            raise _WatchEnded(result.get("cancel_reason") or "watch cancelled by etcd")
        elif result.get("events"):
            self._tree.apply_events([self._event(e) for e in result["events"]])
        elif header.get("revision"):
            self._tree.progress(int(header["revision"]))  # a progress notification

    @staticmethod
    def _event(event: dict[str, Any]) -> tuple[str, str | None, int]:
        kv = event["kv"]
        revision = int(kv["mod_revision"])
        # A PUT event has no "type": proto3 JSON omits the default enum value.
        if event.get("type") == "DELETE":
            return _text(kv["key"]), None, revision
        return _text(kv["key"]), _text(kv.get("value", "")), revision

    def _abort_watch(self) -> None:
        """Wake the watch thread out of its blocking read by shutting its socket down."""
        with self._watch_lock:
            response = self._watch_response
        if response is None:
            return
        sock = getattr(getattr(response.raw, "connection", None), "sock", None)
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
