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
from urllib.parse import urlsplit

import pytest
from etcd3gw.client import Etcd3Client

from imchat.backends.base import BackendUnavailable, Router
from imchat.backends.router_embedded import EmbeddedRouter
from imchat.backends.router_etcd import EtcdRouter, endpoint_health
from imchat.config import Settings
from tests.support.waiting import free_port, wait_for

REPO_ROOT = Path(__file__).resolve().parents[2]
ADDRESS_A = "10.0.0.1:8001"
ADDRESS_B = "10.0.0.2:8001"


# ----------------------------------------------------------------- helpers
def etcd_client(endpoint: str) -> Etcd3Client:
    url = urlsplit(endpoint)
    return Etcd3Client(host=url.hostname or "127.0.0.1", port=url.port or 2379, timeout=5)


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
def own_etcd(tmp_path: Path) -> Iterator[OwnEtcd]:
    etcd = OwnEtcd(tmp_path / "etcd-data")
    etcd.start()
    yield etcd
    etcd.kill()


# -------------------------------------------- the contract, on both twins
def test_a_route_to_a_registered_gateway_is_visible_at_once(router: Router) -> None:
    router.register_gateway("gw-a", ADDRESS_A)
    router.add_route("alice", "gw-a")
    # No waiting: a sender and a recipient on one gateway must never race the watch.
    assert router.gateways_for("alice") == {"gw-a"}
    assert router.gateways_for("bob") == set()


def test_a_user_may_be_on_two_gateways(router: Router) -> None:
    router.register_gateway("gw-a", ADDRESS_A)
    router.register_gateway("gw-b", ADDRESS_B)
    router.add_route("alice", "gw-a")
    router.add_route("alice", "gw-b")
    router.add_route("alice", "gw-a")  # a second tab on the same gateway
    assert router.gateways_for("alice") == {"gw-a", "gw-b"}


def test_remove_route_drops_only_that_route(router: Router) -> None:
    router.register_gateway("gw-a", ADDRESS_A)
    router.register_gateway("gw-b", ADDRESS_B)
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
    router.register_gateway("gw-a", ADDRESS_A)
    router.register_gateway("gw-b", ADDRESS_B)
    router.add_route("alice", "gw-a")
    router.add_route("alice", "gw-b")
    router.add_route("bob", "gw-a")
    router.unregister_gateway("gw-a")
    assert router.gateways_for("alice") == {"gw-b"}
    assert router.gateways_for("bob") == set()
    assert router.live_gateways() == {"gw-b": ADDRESS_B}
    router.unregister_gateway("gw-a")  # twice is harmless


def test_live_gateways_lists_addresses(router: Router) -> None:
    assert router.live_gateways() == {}
    router.register_gateway("gw-a", ADDRESS_A)
    router.register_gateway("gw-b", ADDRESS_B)
    assert router.live_gateways() == {"gw-a": ADDRESS_A, "gw-b": ADDRESS_B}
    router.register_gateway("gw-a", "10.0.0.9:8001")  # re-registered at a new address
    assert router.live_gateways() == {"gw-a": "10.0.0.9:8001", "gw-b": ADDRESS_B}


def test_add_route_to_an_unregistered_gateway_raises_key_error(router: Router) -> None:
    with pytest.raises(KeyError):
        router.add_route("alice", "gw-nowhere")
    router.register_gateway("gw-a", ADDRESS_A)
    router.unregister_gateway("gw-a")
    with pytest.raises(KeyError):
        router.add_route("alice", "gw-a")
    assert router.gateways_for("alice") == set()


def test_ids_with_separators_round_trip(router: Router) -> None:
    router.register_gateway("gw/a b", ADDRESS_A)
    router.add_route("user/1 é", "gw/a b")
    assert router.gateways_for("user/1 é") == {"gw/a b"}
    assert router.gateways_for("user") == set()
    assert router.live_gateways() == {"gw/a b": ADDRESS_A}


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
    recipient_side.register_gateway("gw-b", ADDRESS_B)
    recipient_side.add_route("bob", "gw-b")

    started = time.monotonic()
    wait_for(lambda: sender_side.gateways_for("bob") == {"gw-b"}, 1.0, "bob's route at the sender")
    assert time.monotonic() - started < 1.0
    assert sender_side.live_gateways() == {"gw-b": ADDRESS_B}

    recipient_side.remove_route("bob", "gw-b")
    wait_for(lambda: sender_side.gateways_for("bob") == set(), 1.0, "bob's route gone")
    recipient_side.unregister_gateway("gw-b")
    wait_for(lambda: sender_side.live_gateways() == {}, 1.0, "gw-b gone")


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
    router.register_gateway("gw-a", ADDRESS_A)
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
    first.register_gateway("gw-a", ADDRESS_A)
    for n in range(30):
        first.add_route(f"user-{n}", "gw-a")
    late = make_etcd_router(shared_etcd, prefix)
    # Synced in the constructor: no waiting for the watch.
    assert late.gateways_for("user-29") == {"gw-a"}
    assert late.live_gateways() == {"gw-a": ADDRESS_A}


@integration
def test_a_dead_gateway_expires_and_a_renewed_one_stays(
    shared_etcd: str, prefix: str, make_etcd_router: Callable[..., EtcdRouter]
) -> None:
    ttl = 3
    dying = make_etcd_router(shared_etcd, prefix, ttl=ttl, renew=1)
    alive = make_etcd_router(shared_etcd, prefix, ttl=ttl, renew=1)
    registered_at = time.monotonic()
    dying.register_gateway("gw-dying", ADDRESS_A)
    dying.add_route("alice", "gw-dying")
    alive.register_gateway("gw-alive", ADDRESS_B)
    alive.add_route("bob", "gw-alive")
    wait_for(lambda: alive.gateways_for("alice") == {"gw-dying"}, 1.0, "alice's route")

    closing = time.monotonic()
    dying.close()  # the process dies: its lease is no longer renewed, nor revoked
    assert time.monotonic() - closing < 1.0, "close() must not wait out the watch"
    wait_for(
        lambda: alive.gateways_for("alice") == set() and "gw-dying" not in alive.live_gateways(),
        ttl + 2,
        "the dead gateway's lease to expire",
    )

    time.sleep(max(0.0, registered_at + 2 * ttl + 0.5 - time.monotonic()))
    assert alive.live_gateways() == {"gw-alive": ADDRESS_B}
    assert alive.gateways_for("bob") == {"gw-alive"}
    # And in etcd itself, as a process starting now sees it.
    newcomer = make_etcd_router(shared_etcd, prefix, ttl=ttl, renew=1)
    assert newcomer.live_gateways() == {"gw-alive": ADDRESS_B}
    assert newcomer.gateways_for("bob") == {"gw-alive"}


@integration
def test_a_lost_lease_is_recreated_with_its_routes(
    shared_etcd: str, prefix: str, make_etcd_router: Callable[..., EtcdRouter]
) -> None:
    gateway = make_etcd_router(shared_etcd, prefix, ttl=5, renew=1)
    observer = make_etcd_router(shared_etcd, prefix, ttl=5, renew=1)
    gateway.register_gateway("gw-a", ADDRESS_A)
    gateway.add_route("alice", "gw-a")
    wait_for(lambda: observer.gateways_for("alice") == {"gw-a"}, 1.0, "alice's route")

    # etcd loses the lease (as after a pause longer than the TTL): revoke it behind our back.
    client = etcd_client(shared_etcd.split(",")[0])
    [(_, meta)] = client.get(f"{prefix}/gateways/gw-a", metadata=True)
    client.post(client.get_url("/kv/lease/revoke"), json={"ID": int(meta["lease"])})
    wait_for(lambda: observer.gateways_for("alice") == set(), 1.0, "the routes to vanish")

    # The next add_route or renewal notices and writes everything again under a new lease.
    gateway.add_route("bob", "gw-a")
    wait_for(
        lambda: (
            observer.gateways_for("alice") == {"gw-a"}
            and observer.gateways_for("bob") == {"gw-a"}
            and observer.live_gateways() == {"gw-a": ADDRESS_A}
        ),
        3.0,
        "the gateway and both routes back",
    )


@integration
def test_a_dead_endpoint_fails_over_to_the_next(
    shared_etcd: str, prefix: str, make_etcd_router: Callable[..., EtcdRouter]
) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    gateway = make_etcd_router(f"{dead},{shared_etcd}", prefix)
    observer = make_etcd_router(f"{dead},{shared_etcd}", prefix)
    gateway.register_gateway("gw-a", ADDRESS_A)
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
        router.register_gateway("gw-a", ADDRESS_A)
    assert router.live_gateways() == {}


# ------------------------------------------------- etcd: breaking etcd itself
@integration
def test_the_watch_survives_an_etcd_restart(
    own_etcd: OwnEtcd, prefix: str, make_etcd_router: Callable[..., EtcdRouter]
) -> None:
    gateway = make_etcd_router(own_etcd.url, prefix)
    observer = make_etcd_router(own_etcd.url, prefix)
    gateway.register_gateway("gw-a", ADDRESS_A)
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
        gateway.register_gateway("gw-a", ADDRESS_A)
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
        gateway.register_gateway("gw-a", ADDRESS_A)
        wait_for(lambda: observer.live_gateways() == {"gw-a": ADDRESS_A}, 1.0, "gw-a")
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

from imchat.backends.router_etcd import EtcdRouter
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
gateway.register_gateway("gw-a", "10.0.0.1:8001")
gateway.add_route("alice", "gw-a")
start = time.monotonic()
while observer.gateways_for("alice") != {"gw-a"}:
    assert time.monotonic() - start < 1.0, "the route did not reach the observer"
    gevent.sleep(0.01)
gevent.sleep(3)  # past the 2 s TTL: only the renewal greenlet keeps the gateway alive
assert observer.live_gateways() == {"gw-a": "10.0.0.1:8001"}, observer.live_gateways()
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
