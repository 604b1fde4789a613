"""The watch that keeps the local tree current.

Our own long poll of etcd's HTTP gateway rather than etcd3gw's
``watch_prefix``, whose iterator silently stops for good after an etcd
restart: ours resumes from the last applied revision and resyncs from a range
read when that revision was compacted or the answer contradicts the local copy.
Waits go through ``threading``, so it runs in greenlets after monkey patching too.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import threading
from collections.abc import Iterator
from typing import Any

import requests
from etcd3gw import exceptions as etcd_errors
from etcd3gw.client import Etcd3Client
from urllib3.exceptions import ReadTimeoutError

from imchat.backends.base import BackendUnavailable
from imchat.backends.etcd.http import (
    REQUEST_TIMEOUT,
    Endpoints,
    b64,
    describe,
    range_end,
    revision,
    text,
)
from imchat.backends.etcd.keys import Keys
from imchat.backends.etcd.tree import Event, LocalTree

log = logging.getLogger(__name__)

# A silent watch is reopened after this long: a half-open TCP connection (a
# partitioned node) raises no error, it just never delivers again.
WATCH_IDLE_SECONDS = 10.0
RETRY_MIN_SECONDS = 0.1
RETRY_MAX_SECONDS = 2.0


class WatchCompacted(Exception):
    """The revision to resume from is compacted away: resync from a snapshot."""


class WatchDoubt(Exception):
    """The watch contradicts the local copy (other cluster, older store): resync all."""


class WatchEnded(Exception):
    """The watch stream ended or etcd cancelled it: reopen it after a pause."""


class Backoff:
    """Doubling pauses between reconnection attempts, reset once a watch is up."""

    def __init__(self) -> None:
        self._delay = RETRY_MIN_SECONDS

    def reset(self) -> None:
        self._delay = RETRY_MIN_SECONDS

    def next(self) -> float:
        delay = self._delay
        self._delay = min(delay * 2, RETRY_MAX_SECONDS)
        return delay


def is_idle_timeout(exc: BaseException) -> bool:
    # requests wraps urllib3's read timeout of a streamed body in a ConnectionError.
    return any(isinstance(arg, ReadTimeoutError) for arg in exc.args)


def watch_results(response: requests.Response) -> Iterator[dict[str, Any]]:
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
                raise WatchEnded(f"etcd watch error: {message}")
            yield message["result"]


def watch_event(event: dict[str, Any]) -> Event:
    kv = event["kv"]
    mod_revision = int(kv["mod_revision"])
    # A PUT event has no "type": proto3 JSON omits the default enum value.
    if event.get("type") == "DELETE":
        return text(kv["key"]), None, mod_revision
    return text(kv["key"]), text(kv.get("value", "")), mod_revision


class Watcher:
    """Syncs ``tree`` from a snapshot, then follows the watch until ``stopped`` is set."""

    def __init__(
        self,
        endpoints: Endpoints,
        stream_endpoints: Endpoints,
        keys: Keys,
        tree: LocalTree,
        stopped: threading.Event,
        idle_seconds: float = WATCH_IDLE_SECONDS,
    ) -> None:
        self._endpoints = endpoints  # range reads
        self._stream_endpoints = stream_endpoints  # the long-lived stream holds a connection
        self._keys = keys
        self._tree = tree
        self._stopped = stopped
        self._idle = idle_seconds
        self._retry = Backoff()
        self._lock = threading.Lock()
        self._response: requests.Response | None = None

    def initial_sync(self) -> None:
        try:
            self.sync(hard=False)
        except BackendUnavailable as exc:
            # Start anyway: the watch loop keeps trying, /readyz reports etcd meanwhile.
            log.warning("etcd unreachable at start, routes will sync in the background: %s", exc)

    def sync(self, hard: bool) -> None:
        """Replace the local copy by a snapshot of the prefix."""
        found = self._endpoints.read_prefix(self._keys.root)
        snapshot = {
            text(kv["key"]): (int(kv["mod_revision"]), text(kv.get("value", "")))
            for kv in found.kvs
        }
        self._tree.replace(snapshot, found.revision, found.cluster_id, hard)

    def run(self) -> None:
        """Keep the local copy current until stopped: follow, reconnect, resync."""
        pending_sync = self._tree.revision == 0
        hard = False
        while not self._stopped.is_set():
            try:
                if pending_sync:
                    self.sync(hard)
                    pending_sync = hard = False
                self._follow()
            except WatchCompacted as exc:
                log.info("etcd watch revision %s was compacted; resyncing", exc)
                pending_sync = True
            except WatchDoubt as exc:
                log.warning("etcd watch contradicts the local copy (%s); resyncing", exc)
                pending_sync = hard = True
            except (BackendUnavailable, WatchEnded, requests.RequestException, OSError) as exc:
                if not self._stopped.is_set():
                    log.warning("etcd watch interrupted, reconnecting: %s", describe(exc))
                self._stopped.wait(self._retry.next())
            except Exception:
                # Never let the loop die: a dead watch means a silently stale copy.
                log.exception("etcd watch failed; reconnecting")
                self._stopped.wait(self._retry.next())

    def _follow(self) -> None:
        """Apply watch events from the last applied revision until the stream ends."""
        response = self._stream_endpoints.run(self._open)
        with self._lock:
            if self._stopped.is_set():
                response.close()
                return
            self._response = response
        try:
            for result in watch_results(response):
                self._on_result(result)
        except requests.ConnectionError as exc:
            if is_idle_timeout(exc):
                return  # quiet for a while: reopen, in case the connection is half-open
            raise
        finally:
            with self._lock:
                self._response = None
            response.close()
        raise WatchEnded("the watch stream ended")

    def _open(self, client: Etcd3Client) -> requests.Response:
        create: dict[str, Any] = {
            "key": b64(self._keys.root),
            "range_end": range_end(self._keys.root),
            "start_revision": self._tree.revision + 1,
            "progress_notify": True,
        }
        response = client.session.post(
            client.get_url("/watch"),
            json={"create_request": create},
            stream=True,
            timeout=(REQUEST_TIMEOUT, self._idle),
        )
        if response.status_code != 200:
            detail = response.text
            response.close()
            raise etcd_errors.ConnectionFailedError(detail)
        return response

    def _on_result(self, result: dict[str, Any]) -> None:
        header = result.get("header", {})
        cluster_id = str(header.get("cluster_id", ""))
        if self._tree.cluster_id and cluster_id and cluster_id != self._tree.cluster_id:
            raise WatchDoubt(f"cluster id {cluster_id}, was {self._tree.cluster_id}")
        if result.get("created"):
            if revision(result) < self._tree.revision:
                raise WatchDoubt(f"store at revision {revision(result)}, copy at later one")
            self._retry.reset()
        elif result.get("canceled"):
            compacted = int(result.get("compact_revision", 0))
            if compacted:
                raise WatchCompacted(compacted)
            raise WatchEnded(result.get("cancel_reason") or "watch cancelled by etcd")
        elif result.get("events"):
            self._tree.apply_events([watch_event(e) for e in result["events"]])
        elif header.get("revision"):
            self._tree.progress(int(header["revision"]))  # a progress notification

    def abort(self) -> None:
        """Wake the watch thread out of its blocking read by shutting its socket down."""
        with self._lock:
            response = self._response
        if response is None:
            return
        sock = getattr(getattr(response.raw, "connection", None), "sock", None)
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
