"""etcd's HTTP/JSON gateway: one client per member, failover, and the range paging.

Blocking calls go through ``requests``, so the same code runs in plain threads
and in greenlets after gevent's monkey patching.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit

import requests
from etcd3gw import exceptions as etcd_errors
from etcd3gw.client import Etcd3Client

from imchat.backends.base import BackendUnavailable

T = TypeVar("T")

REQUEST_TIMEOUT = 3.0  # one etcd call; past it the next endpoint is tried
RANGE_PAGE_SIZE = 1000
LEASE_NOT_FOUND = "requested lease not found"

# Failures of the endpoint rather than of the request: the next endpoint may answer.
TRANSPORT_ERRORS = (
    etcd_errors.ConnectionFailedError,
    etcd_errors.ConnectionTimeoutError,
    etcd_errors.InternalServerError,
    etcd_errors.ApiVersionDiscoveryFailedError,
    requests.RequestException,
)


class LeaseMissing(BackendUnavailable):
    """etcd no longer knows the lease: it expired (or the cluster was replaced).

    Handled inside the adapter by re-creating the lease; should one escape, callers
    see an ordinary BackendUnavailable.
    """

    def __init__(self) -> None:
        super().__init__("etcd", "the gateway's lease is gone")


# ------------------------------------------------------------ the encoding
def b64(data: str | bytes) -> str:
    """Keys and values travel base64-encoded in the JSON API."""
    raw = data.encode("utf-8") if isinstance(data, str) else data
    return base64.b64encode(raw).decode("ascii")


def text(data: str) -> str:
    return base64.b64decode(data).decode("utf-8", "replace")


def range_end(prefix: str) -> str:
    """The range_end that selects every key starting with ``prefix``."""
    raw = prefix.encode("utf-8")
    return b64(raw[:-1] + bytes([raw[-1] + 1]))


def revision(response: dict[str, Any]) -> int:
    """The store revision an answer was given at."""
    return int(response.get("header", {}).get("revision", 0))


def describe(exc: BaseException) -> str:
    detail = getattr(exc, "detail_text", None) or str(exc) or type(exc).__name__
    return str(detail).strip()[:300]


def normalize(endpoint: str) -> str:
    """``host:port`` or a URL, as a URL without a trailing slash."""
    endpoint = endpoint.strip().rstrip("/")
    return endpoint if "://" in endpoint else f"http://{endpoint}"


def make_client(endpoint: str, timeout: float) -> Etcd3Client:
    url = urlsplit(normalize(endpoint))
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


# --------------------------------------------------------------- failover
@dataclass(frozen=True)
class Snapshot:
    """Every key-value under a prefix, read page by page at one revision."""

    kvs: list[dict[str, Any]]
    revision: int
    cluster_id: str


class Endpoints:
    """One etcd3gw client per cluster member; a call that cannot reach one tries the next."""

    def __init__(self, endpoints: list[str], timeout: float = REQUEST_TIMEOUT) -> None:
        if not endpoints:
            raise ValueError("no etcd endpoint configured (IMCHAT_ETCD_ENDPOINTS)")
        self._clients = [make_client(endpoint, timeout) for endpoint in endpoints]
        self._current = 0  # the member that answered last: tried first

    def run(self, op: Callable[[Etcd3Client], T]) -> T:
        """``op`` on the first member that answers; BackendUnavailable when none does."""
        failures = []
        for attempt in range(len(self._clients)):
            index = (self._current + attempt) % len(self._clients)
            client = self._clients[index]
            try:
                result = op(client)
            except TRANSPORT_ERRORS as exc:
                failures.append(f"{client.base_url}: {describe(exc)}")
                continue
            except etcd_errors.Etcd3Exception as exc:
                if LEASE_NOT_FOUND in (exc.detail_text or ""):
                    raise LeaseMissing() from exc
                raise BackendUnavailable("etcd", describe(exc)) from exc
            self._current = index
            return result
        raise BackendUnavailable("etcd", "; ".join(failures))

    def post(self, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        """POST ``payload`` to the v3 JSON API; the decoded answer."""
        return self.run(lambda client: client.post(client.get_url(path), json=payload))

    def read_prefix(self, prefix: str, *, keys_only: bool = False) -> Snapshot:
        """Every key under ``prefix`` (values too unless ``keys_only``), paged at one revision."""
        payload: dict[str, Any] = {
            "key": b64(prefix),
            "range_end": range_end(prefix),
            "limit": RANGE_PAGE_SIZE,
        }
        if keys_only:
            payload["keys_only"] = True
        kvs: list[dict[str, Any]] = []
        while True:
            response = self.post("/kv/range", payload)
            # Later pages are read at the first one's revision: one consistent picture.
            payload.setdefault("revision", revision(response))
            page = response.get("kvs", [])
            kvs += page
            if not page or not response.get("more"):
                break
            payload["key"] = b64(base64.b64decode(page[-1]["key"]) + b"\0")
        cluster_id = str(response.get("header", {}).get("cluster_id", ""))
        return Snapshot(kvs, payload["revision"], cluster_id)

    def close(self) -> None:
        for client in self._clients:
            client.session.close()
