"""The Router contract, run against the embedded twin and the etcd adapter.

The etcd-only tests play several gateway processes (several EtcdRouter on one
prefix) and break etcd on purpose: a private etcd on free ports is started,
killed and restarted, or cut off behind a TCP forwarder, never the shared one.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import quote, urlsplit

import pytest
from etcd3gw.client import Etcd3Client

from imchat.backends.base import BackendUnavailable, Router
from imchat.backends.etcd import EtcdRouter, endpoint_health
from imchat.backends.router_embedded import EmbeddedRouter
from imchat.config import Settings
from tests.support.waiting import free_port, wait_for

REPO_ROOT = Path(__file__).resolve().parents[2]
StaleRoute = Callable[[str, str], None]


# ----------------------------------------------------------------- helpers
def etcd_client(endpoint: str) -> Etcd3Client:
    url = urlsplit(endpoint)
    return Etcd3Client(host=url.hostname or "127.0.0.1", port=url.port or 2379, timeout=5)


def etcd_leases(endpoint: str, prefix: str) -> dict[str, int]:
    """Every key under ``prefix`` (relative to it) and its lease, as etcd holds them now."""
    found = etcd_client(endpoint).get_prefix(prefix + "/")
    return {meta["key"].decode()[len(prefix) + 1 :]: int(meta.get("lease", 0)) for _, meta in found}


def etcd_settings(
    base: Settings, endpoints: str, prefix: str, ttl: int = 10, renew: int = 2
) -> Settings:
    return base.replace(
        etcd_endpoints=endpoints,
        etcd_prefix=prefix,
        etcd_lease_ttl_seconds=ttl,
        etcd_lease_renew_seconds=renew,
    )


class OwnEtcd:
    """A private single-node etcd on free loopback ports, to stop and restart at will."""

    def __init__(self, data_dir: Path) -> None:
        binary = shutil.which("etcd")
        if binary is None:
            pytest.fail("the etcd binary is required (apt-get install -y etcd-server)")
        self._binary = binary
        self._data_dir = data_dir
        self._client_port, self._peer_port = free_port(), free_port()
        self.url = f"http://127.0.0.1:{self._client_port}"
        self._log = data_dir.parent / "etcd.log"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        peer = f"http://127.0.0.1:{self._peer_port}"
        command = [
            self._binary,
            "--name=own",
            f"--data-dir={self._data_dir}",
            f"--listen-client-urls={self.url}",
            f"--advertise-client-urls={self.url}",
            f"--listen-peer-urls={peer}",
            f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=own={peer}",
        ]
        with self._log.open("ab") as log:
            self._process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 15
        while endpoint_health(self.url, 0.5) is not None:
            if self._process.poll() is not None or time.monotonic() > deadline:
                self.kill()
                pytest.fail(f"own etcd did not come up:\n{self._log.read_text()[-2000:]}")
            time.sleep(0.05)

    def kill(self) -> None:
        """Crash it (SIGKILL): what it wrote is on disk, its connections drop."""
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait(timeout=10)
        self._process = None


class TcpCutter:
    """A TCP forwarder to a port that the test can cut off, like a network partition."""

    def __init__(self, target_port: int) -> None:
        self._target_port = target_port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self._open = True
        self._sockets: list[socket.socket] = []
        self._dropping: set[socket.socket] = set()
        self._lock = threading.Lock()
        threading.Thread(target=self._accept_loop, daemon=True).start()

    def cut(self) -> None:
        """Drop every forwarded connection and refuse new ones until ``restore``."""
        with self._lock:
            self._open = False
            doomed, self._sockets = self._sockets, []
        for sock in doomed:
            self._shut(sock)

    def restore(self) -> None:
        with self._lock:
            self._open = True

    def blackhole(self) -> None:
        """Silently drop the traffic of the current connections, keeping them open.

        Like a connection left half-open by a dead peer or a NAT: no error, no data.
        """
        with self._lock:
            self._dropping.update(self._sockets)

    def close(self) -> None:
        self.cut()
        self._listener.close()

    def _accept_loop(self) -> None:
        while True:
            try:
                downstream, _ = self._listener.accept()
            except OSError:
                return  # closed
            with self._lock:
                accepted = self._open
            if not accepted:
                self._shut(downstream)
                continue
            upstream = socket.create_connection(("127.0.0.1", self._target_port))
            with self._lock:
                self._sockets += [downstream, upstream]
            for src, dst in ((downstream, upstream), (upstream, downstream)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                if src not in self._dropping:
                    dst.sendall(data)
        except OSError:
            pass
        self._shut(src)
        self._shut(dst)

    @staticmethod
    def _shut(sock: socket.socket) -> None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        sock.close()


# ---------------------------------------------------------------- fixtures
@pytest.fixture
def prefix(unique: str) -> str:
    return f"/imchat-test-{unique}"


@pytest.fixture
def shared_etcd(etcd_endpoints: str, prefix: str) -> Iterator[str]:
    """The shared etcd's endpoint; this test's prefix is deleted afterwards."""
    yield etcd_endpoints
    etcd_client(etcd_endpoints.split(",")[0]).delete_prefix(prefix + "/")


@pytest.fixture
def make_etcd_router(settings: Settings) -> Iterator[Callable[..., EtcdRouter]]:
    """Build EtcdRouters (gateway processes) that are closed after the test."""
    routers: list[EtcdRouter] = []

    def make(endpoints: str, prefix: str, **lease: int) -> EtcdRouter:
        router = EtcdRouter(etcd_settings(settings, endpoints, prefix, **lease))
        routers.append(router)
        return router

    yield make
    for router in routers:
        router.close()


@pytest.fixture(params=["embedded", pytest.param("etcd", marks=pytest.mark.integration)])
def router(request: pytest.FixtureRequest, prefix: str) -> Router:
    if request.param == "embedded":
        return EmbeddedRouter()
    endpoints = request.getfixturevalue("shared_etcd")
    make: Callable[..., EtcdRouter] = request.getfixturevalue("make_etcd_router")
    return make(endpoints, prefix)


@pytest.fixture
def leave_stale_route(router: Router, request: pytest.FixtureRequest, prefix: str) -> StaleRoute:
    """Leave a route that no registration stands behind, as a bug or a lost lease would."""
    if isinstance(router, EmbeddedRouter):
        routes = router._routes  # the twin's own methods never leave one: write past them

        def plant(user_id: str, gateway_id: str) -> None:
            routes[user_id].add(gateway_id)

        return plant
    client = etcd_client(request.getfixturevalue("shared_etcd").split(",")[0])

    def put_without_lease(user_id: str, gateway_id: str) -> None:
        client.put(f"{prefix}/routes/{quote(user_id, safe='')}/{quote(gateway_id, safe='')}", "1")

    return put_without_lease


@pytest.fixture
def own_etcd(tmp_path: Path) -> Iterator[OwnEtcd]:
    etcd = OwnEtcd(tmp_path / "etcd-data")
    etcd.start()
    yield etcd
    etcd.kill()


# -------------------------------------------- the contract, on both twins
def test_a_route_to_a_registered_gateway_is_visible_at_once(router: Router) -> None:
    router.register_gateway("gw-a")
    router.add_route("alice", "gw-a")
    # No waiting: a sender and a recipient on one gateway must never race the watch.
    assert router.gateways_for("alice") == {"gw-a"}
    assert router.gateways_for("bob") == set()


def test_a_user_may_be_on_two_gateways(router: Router) -> None:
    router.register_gateway("gw-a")
    router.register_gateway("gw-b")
    router.add_route("alice", "gw-a")
    router.add_route("alice", "gw-b")
    router.add_route("alice", "gw-a")  # a second tab on the same gateway
    assert router.gateways_for("alice") == {"gw-a", "gw-b"}


def test_remove_route_drops_only_that_route(router: Router) -> None:
    router.register_gateway("gw-a")
    router.register_gateway("gw-b")
    router.add_route("alice", "gw-a")
    router.add_route("alice", "gw-b")
    router.add_route("bob", "gw-a")
    router.remove_route("alice", "gw-a")
    assert router.gateways_for("alice") == {"gw-b"}
    assert router.gateways_for("bob") == {"gw-a"}
    router.remove_route("alice", "gw-b")
    router.remove_route("alice", "gw-b")  # removing twice is harmless
    assert router.gateways_for("alice") == set()


def test_unregister_gateway_removes_its_routes(router: Router) -> None:
    router.register_gateway("gw-a")
    router.register_gateway("gw-b")
    router.add_route("alice", "gw-a")
    router.add_route("alice", "gw-b")
    router.add_route("bob", "gw-a")
    router.unregister_gateway("gw-a")
    assert router.gateways_for("alice") == {"gw-b"}
    assert router.gateways_for("bob") == set()
    # gw-a is no longer registered, gw-b still is.
    with pytest.raises(KeyError):
        router.add_route("carol", "gw-a")
    router.add_route("carol", "gw-b")
    assert router.gateways_for("carol") == {"gw-b"}
    router.unregister_gateway("gw-a")  # twice is harmless


def test_users_left_without_a_route_are_told(router: Router) -> None:
    told: list[str] = []
    router.on_unrouted(told.extend)
    router.register_gateway("gw-a")
    router.register_gateway("gw-b")
    router.add_route("alice", "gw-a")
    router.add_route("alice", "gw-b")
    router.add_route("bob", "gw-a")

    router.remove_route("alice", "gw-a")
    assert told == [], "alice is still on gw-b"
    router.remove_route("alice", "gw-b")
    assert told == ["alice"], "told at once, by the process that removed it"
    router.remove_route("alice", "gw-b")
    assert told == ["alice"], "a route that was not there changes nothing"

    router.unregister_gateway("gw-a")
    assert told == ["alice", "bob"]


def test_registering_a_gateway_again_keeps_it_and_its_routes(router: Router) -> None:
    router.register_gateway("gw-a")
    router.register_gateway("gw-b")
    router.add_route("alice", "gw-a")
    router.add_route("bob", "gw-b")
    router.register_gateway("gw-a")  # registered again, as after a reconnect
    assert router.gateways_for("alice") == {"gw-a"}
    assert router.gateways_for("bob") == {"gw-b"}
    router.add_route("carol", "gw-a")
    assert router.gateways_for("carol") == {"gw-a"}
    assert router.prune_stale(100) == 0, "every route still has its gateway behind it"


def test_add_route_to_an_unregistered_gateway_raises_key_error(router: Router) -> None:
    with pytest.raises(KeyError):
        router.add_route("alice", "gw-nowhere")
    router.register_gateway("gw-a")
    router.unregister_gateway("gw-a")
    with pytest.raises(KeyError):
        router.add_route("alice", "gw-a")
    assert router.gateways_for("alice") == set()


def test_ids_with_separators_round_trip(router: Router) -> None:
    router.register_gateway("gw/a b")
    router.add_route("user/1 é", "gw/a b")
    assert router.gateways_for("user/1 é") == {"gw/a b"}
    assert router.gateways_for("user") == set()
    # The route's gateway id parses back to the gateway's own key: nothing is stale.
    assert router.prune_stale(100) == 0
    assert router.gateways_for("user/1 é") == {"gw/a b"}
    router.unregister_gateway("gw/a b")
    assert router.gateways_for("user/1 é") == set()


def test_prune_stale_deletes_routes_whose_gateway_is_not_registered(
    router: Router, leave_stale_route: StaleRoute
) -> None:
    router.register_gateway("gw-a")
    router.add_route("alice", "gw-a")
    for user in ("carol", "dave", "erin", "alice"):
        leave_stale_route(user, "gw-gone")
    wait_for(
        lambda: (
            router.gateways_for("erin") == {"gw-gone"}
            and router.gateways_for("alice") == {"gw-a", "gw-gone"}
        ),
        1.0,
        "the stale routes in the local copy",
    )

    assert router.prune_stale(3) == 3  # no more than the limit in one run
    assert router.prune_stale(3) == 1  # the next run goes on
    assert router.prune_stale(3) == 0  # and then finds nothing left

    wait_for(
        lambda: all(router.gateways_for(u) == set() for u in ("carol", "dave", "erin")),
        1.0,
        "the stale routes gone from the local copy",
    )
    assert router.gateways_for("alice") == {"gw-a"}, "the live route stays"


def test_prune_stale_keeps_every_route_of_a_registered_gateway(router: Router) -> None:
    assert router.prune_stale(10) == 0
    router.register_gateway("gw-a")
    router.register_gateway("gw-b")
    for n in range(5):
        router.add_route(f"user-{n}", "gw-a" if n % 2 else "gw-b")
    router.add_route("user-0", "gw-a")
    assert router.prune_stale(10) == 0
    assert router.gateways_for("user-0") == {"gw-a", "gw-b"}
    assert all(router.gateways_for(f"user-{n}") for n in range(5))
    router.unregister_gateway("gw-a")
    assert router.prune_stale(10) == 0, "an unregistered gateway leaves nothing to prune"
    assert router.gateways_for("user-0") == {"gw-b"}


def test_ping_answers_when_the_backend_is_up(router: Router) -> None:
    router.ping(timeout=2.0)


# ------------------------------------------- etcd: several gateway processes
integration = pytest.mark.integration


@integration
def test_a_route_reaches_another_process_within_a_second(
    shared_etcd: str, prefix: str, make_etcd_router: Callable[..., EtcdRouter]
) -> None:
    sender_side = make_etcd_router(shared_etcd, prefix)
    recipient_side = make_etcd_router(shared_etcd, prefix)
    recipient_side.register_gateway("gw-b")
    recipient_side.add_route("bob", "gw-b")

    started = time.monotonic()
    wait_for(lambda: sender_side.gateways_for("bob") == {"gw-b"}, 1.0, "bob's route at the sender")
    assert time.monotonic() - started < 1.0
    # The other process sees gw-b's registration behind the route, under the route's lease.
    assert sender_side.prune_stale(10) == 0

    recipient_side.remove_route("bob", "gw-b")
    wait_for(lambda: sender_side.gateways_for("bob") == set(), 1.0, "bob's route gone")
    recipient_side.add_route("carol", "gw-b")
    wait_for(lambda: sender_side.gateways_for("carol") == {"gw-b"}, 1.0, "carol's route")
    recipient_side.unregister_gateway("gw-b")
    wait_for(lambda: sender_side.gateways_for("carol") == set(), 1.0, "gw-b's routes gone")
    assert etcd_leases(shared_etcd.split(",")[0], prefix) == {}, "gw-b's key gone too"


@integration
def test_another_process_is_told_when_users_lose_their_last_route(
    shared_etcd: str, prefix: str, make_etcd_router: Callable[..., EtcdRouter]
) -> None:
    watcher = make_etcd_router(shared_etcd, prefix)
    told: list[str] = []
    watcher.on_unrouted(told.extend)
    gateway = make_etcd_router(shared_etcd, prefix)
    gateway.register_gateway("gw-b")
    gateway.add_route("bob", "gw-b")
    gateway.add_route("carol", "gw-b")
    wait_for(lambda: watcher.gateways_for("carol") == {"gw-b"}, 1.0, "carol's route")

    gateway.remove_route("bob", "gw-b")
    wait_for(lambda: told == ["bob"], 1.0, "bob unrouted, seen by the watch")
    gateway.unregister_gateway("gw-b")  # as a lease that ended: every route at once
    wait_for(lambda: told == ["bob", "carol"], 1.0, "carol unrouted with gw-b's lease")


@integration
def test_own_writes_win_over_a_lagging_watch(
    shared_etcd: str, prefix: str, make_etcd_router: Callable[..., EtcdRouter]
) -> None:
    router = make_etcd_router(shared_etcd, prefix)
    # Hold the watch back (etcd is usually faster than the put's own answer) and
    # record what readers would see after each batch it applies late.
    gate = threading.Event()
    seen_after_batch: list[set[str]] = []
    apply_events = router._tree.apply_events

    def lagging(events: list[tuple[str, str | None, int]]) -> None:
        gate.wait()
        apply_events(events)
        seen_after_batch.append(router.gateways_for("alice"))

    router._tree.apply_events = lagging  # type: ignore[method-assign]
    router.register_gateway("gw-a")
    router.add_route("alice", "gw-a")
    assert router.gateways_for("alice") == {"gw-a"}
    router.remove_route("alice", "gw-a")
    assert router.gateways_for("alice") == set()
    router.add_route("bob", "gw-a")

    [(_, bob_put)] = etcd_client(shared_etcd.split(",")[0]).get(
        f"{prefix}/routes/bob/gw-a", metadata=True
    )
    gate.set()
    wait_for(lambda: router._tree.revision >= int(bob_put["mod_revision"]), 2.0, "the late replay")
    # Replaying alice's older PUT must not bring back the route removed since.
    assert seen_after_batch and all(seen == set() for seen in seen_after_batch)
    assert router.gateways_for("bob") == {"gw-a"}


@integration
def test_a_new_process_starts_from_a_snapshot(
    shared_etcd: str, prefix: str, make_etcd_router: Callable[..., EtcdRouter]
) -> None:
    first = make_etcd_router(shared_etcd, prefix)
    first.register_gateway("gw-a")
    for n in range(30):
        first.add_route(f"user-{n}", "gw-a")
    late = make_etcd_router(shared_etcd, prefix)
    # Synced in the constructor: no waiting for the watch.
    assert all(late.gateways_for(f"user-{n}") == {"gw-a"} for n in range(30))
    assert late.prune_stale(100) == 0  # gw-a's key is there, under its routes' lease


@integration
def test_a_dead_gateway_expires_and_a_renewed_one_stays(
    shared_etcd: str, prefix: str, make_etcd_router: Callable[..., EtcdRouter]
) -> None:
    ttl = 3
    dying = make_etcd_router(shared_etcd, prefix, ttl=ttl, renew=1)
    alive = make_etcd_router(shared_etcd, prefix, ttl=ttl, renew=1)
    registered_at = time.monotonic()
    dying.register_gateway("gw-dying")
    dying.add_route("alice", "gw-dying")
    alive.register_gateway("gw-alive")
    alive.add_route("bob", "gw-alive")
    wait_for(lambda: alive.gateways_for("alice") == {"gw-dying"}, 1.0, "alice's route")

    closing = time.monotonic()
    dying.close()  # the process dies: its lease is no longer renewed, nor revoked
    assert time.monotonic() - closing < 1.0, "close() must not wait out the watch"
    endpoint = shared_etcd.split(",")[0]
    wait_for(
        lambda: (
            alive.gateways_for("alice") == set()
            and "gateways/gw-dying" not in etcd_leases(endpoint, prefix)
        ),
        ttl + 2,
        "the dead gateway's lease to expire",
    )

    time.sleep(max(0.0, registered_at + 2 * ttl + 0.5 - time.monotonic()))
    assert alive.gateways_for("bob") == {"gw-alive"}
    # And in etcd itself, as a process starting now sees it: the renewed lease holds both keys.
    held = etcd_leases(endpoint, prefix)
    assert set(held) == {"gateways/gw-alive", "routes/bob/gw-alive"}
    assert held["gateways/gw-alive"] == held["routes/bob/gw-alive"] != 0
    newcomer = make_etcd_router(shared_etcd, prefix, ttl=ttl, renew=1)
    assert newcomer.gateways_for("bob") == {"gw-alive"}
    assert newcomer.gateways_for("alice") == set()


@integration
def test_a_lost_lease_is_recreated_with_its_routes(
    shared_etcd: str, prefix: str, make_etcd_router: Callable[..., EtcdRouter]
) -> None:
    gateway = make_etcd_router(shared_etcd, prefix, ttl=5, renew=1)
    observer = make_etcd_router(shared_etcd, prefix, ttl=5, renew=1)
    gateway.register_gateway("gw-a")
    gateway.add_route("alice", "gw-a")
    wait_for(lambda: observer.gateways_for("alice") == {"gw-a"}, 1.0, "alice's route")

    # etcd loses the lease (as after a pause longer than the TTL): revoke it behind our back.
    client = etcd_client(shared_etcd.split(",")[0])
    [(_, meta)] = client.get(f"{prefix}/gateways/gw-a", metadata=True)
    lost_lease = int(meta["lease"])
    client.post(client.get_url("/kv/lease/revoke"), json={"ID": lost_lease})
    wait_for(lambda: observer.gateways_for("alice") == set(), 1.0, "the routes to vanish")

    # The next add_route or renewal notices and writes everything again under a new lease.
    gateway.add_route("bob", "gw-a")
    wait_for(
        lambda: (
            observer.gateways_for("alice") == {"gw-a"} and observer.gateways_for("bob") == {"gw-a"}
        ),
        3.0,
        "both routes back",
    )
    held = etcd_leases(shared_etcd.split(",")[0], prefix)
    assert set(held) == {"gateways/gw-a", "routes/alice/gw-a", "routes/bob/gw-a"}
    assert len(set(held.values())) == 1, "the gateway and its routes share one lease"
    assert held["gateways/gw-a"] not in (0, lost_lease)


@integration
def test_a_dead_endpoint_fails_over_to_the_next(
    shared_etcd: str, prefix: str, make_etcd_router: Callable[..., EtcdRouter]
) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    gateway = make_etcd_router(f"{dead},{shared_etcd}", prefix)
    observer = make_etcd_router(f"{dead},{shared_etcd}", prefix)
    gateway.register_gateway("gw-a")
    gateway.add_route("alice", "gw-a")
    wait_for(lambda: observer.gateways_for("alice") == {"gw-a"}, 2.0, "alice's route")
    gateway.ping(timeout=2.0)


@integration
def test_an_unreachable_etcd_is_backend_unavailable(
    prefix: str, make_etcd_router: Callable[..., EtcdRouter]
) -> None:
    nowhere = f"http://127.0.0.1:{free_port()}"
    assert endpoint_health(nowhere, 0.5) is not None
    router = make_etcd_router(nowhere, prefix)  # starts anyway; syncs once etcd answers
    with pytest.raises(BackendUnavailable, match="etcd"):
        router.ping(timeout=0.5)
    with pytest.raises(BackendUnavailable, match="etcd"):
        router.register_gateway("gw-a")
    with pytest.raises(KeyError):  # the failed registration left nothing registered
        router.add_route("alice", "gw-a")


# ------------------------------------------------- etcd: breaking etcd itself
@integration
def test_the_watch_survives_an_etcd_restart(
    own_etcd: OwnEtcd, prefix: str, make_etcd_router: Callable[..., EtcdRouter]
) -> None:
    gateway = make_etcd_router(own_etcd.url, prefix)
    observer = make_etcd_router(own_etcd.url, prefix)
    gateway.register_gateway("gw-a")
    gateway.add_route("alice", "gw-a")
    wait_for(lambda: observer.gateways_for("alice") == {"gw-a"}, 1.0, "alice's route")

    own_etcd.kill()
    with pytest.raises(BackendUnavailable, match="etcd"):
        observer.ping(timeout=1.0)
    with pytest.raises(BackendUnavailable, match="etcd"):
        gateway.add_route("carol", "gw-a")
    assert observer.gateways_for("alice") == {"gw-a"}  # reads go on from the local copy

    own_etcd.start()
    observer.ping(timeout=2.0)
    gateway.add_route("bob", "gw-a")
    wait_for(lambda: observer.gateways_for("bob") == {"gw-a"}, 5.0, "bob's route after restart")
    assert observer.gateways_for("alice") == {"gw-a"}
    assert observer.gateways_for("carol") == set()
    gateway.remove_route("alice", "gw-a")
    wait_for(lambda: observer.gateways_for("alice") == set(), 1.0, "alice's route removed")


@integration
def test_the_watch_resyncs_when_its_revision_was_compacted(
    own_etcd: OwnEtcd, prefix: str, make_etcd_router: Callable[..., EtcdRouter]
) -> None:
    cutter = TcpCutter(int(urlsplit(own_etcd.url).port or 0))
    try:
        gateway = make_etcd_router(own_etcd.url, prefix)
        observer = make_etcd_router(f"http://127.0.0.1:{cutter.port}", prefix)
        gateway.register_gateway("gw-a")
        gateway.add_route("alice", "gw-a")
        wait_for(lambda: observer.gateways_for("alice") == {"gw-a"}, 1.0, "alice's route")

        cutter.cut()  # the observer misses what follows...
        gateway.add_route("bob", "gw-a")
        gateway.remove_route("alice", "gw-a")
        client = etcd_client(own_etcd.url)
        revision = int(client.status()["header"]["revision"])
        # ...and the history it would resume from is gone.
        client.post(client.get_url("/kv/compaction"), json={"revision": revision})
        assert observer.gateways_for("alice") == {"gw-a"}
        cutter.restore()

        wait_for(
            lambda: (
                observer.gateways_for("bob") == {"gw-a"} and observer.gateways_for("alice") == set()
            ),
            5.0,
            "the observer resynced",
        )
        gateway.add_route("carol", "gw-a")  # and it follows the watch again afterwards
        wait_for(lambda: observer.gateways_for("carol") == {"gw-a"}, 1.0, "carol's route")
    finally:
        cutter.close()


@integration
def test_a_silent_watch_connection_is_replaced(
    own_etcd: OwnEtcd, prefix: str, settings: Settings
) -> None:
    cutter = TcpCutter(int(urlsplit(own_etcd.url).port or 0))
    gateway = EtcdRouter(etcd_settings(settings, own_etcd.url, prefix))
    observer = EtcdRouter(
        etcd_settings(settings, f"http://127.0.0.1:{cutter.port}", prefix), watch_idle_seconds=1.0
    )
    try:
        gateway.register_gateway("gw-a")
        gateway.add_route("zoe", "gw-a")
        wait_for(lambda: observer.gateways_for("zoe") == {"gw-a"}, 1.0, "zoe over the first watch")
        cutter.blackhole()  # the observer's watch now hears nothing, and no error either
        gateway.add_route("alice", "gw-a")
        wait_for(lambda: observer.gateways_for("alice") == {"gw-a"}, 3.0, "alice over a new watch")
    finally:
        observer.close()
        gateway.close()
        cutter.close()


# ---------------------------------------------------------------- gevent
GEVENT_SCRIPT = """
from gevent import monkey

monkey.patch_all()

import sys
import time

import gevent

from imchat.backends.etcd import EtcdRouter
from imchat.config import load_settings

endpoint, prefix = sys.argv[1:3]
settings = load_settings(environ={}, overrides={
    "etcd_endpoints": endpoint, "etcd_prefix": prefix,
    "etcd_lease_ttl_seconds": 2, "etcd_lease_renew_seconds": 1,
})
ticks = []

def tick():
    while True:
        ticks.append(time.monotonic())
        gevent.sleep(0.01)

gevent.spawn(tick)
gateway, observer = EtcdRouter(settings), EtcdRouter(settings)
gateway.register_gateway("gw-a")
gateway.add_route("alice", "gw-a")
start = time.monotonic()
while observer.gateways_for("alice") != {"gw-a"}:
    assert time.monotonic() - start < 1.0, "the route did not reach the observer"
    gevent.sleep(0.01)
gevent.sleep(3)  # past the 2 s TTL: only the renewal greenlet keeps the gateway alive
# The route hangs on gw-a's lease: still there only if the lease was renewed.
assert observer.gateways_for("alice") == {"gw-a"}, observer.gateways_for("alice")
stall = max(later - earlier for earlier, later in zip(ticks, ticks[1:]))
assert stall < 0.5, f"the hub was blocked for {stall:.3f}s"
start = time.monotonic()
gateway.close()
observer.close()
assert time.monotonic() - start < 1.0, "close() hung"
print("OK")
"""


@integration
def test_the_router_works_under_gevent_monkey_patching(shared_etcd: str, prefix: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", GEVENT_SCRIPT, shared_etcd, prefix],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=REPO_ROOT,
    )
    assert done.returncode == 0 and done.stdout.strip() == "OK", done.stderr[-3000:]
