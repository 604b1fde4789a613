"""The production process set against the real services: two gateway
processes, the bus consumer and a Celery worker, on MariaDB, Redis, the
Kafka-protocol broker and etcd."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis

from imchat import migrate
from imchat.client import ApiClient, Session
from imchat.config import load_settings

ROOT = Path(__file__).resolve().parents[2]
# The stack has a Redis server of its own (tests restart and flush it); the
# Celery broker lives in another database of it.
STACK_REDIS_DB = 0
CELERY_REDIS_DB = 1


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Process:
    name: str
    argv: list[str]
    env: dict[str, str]
    log: Path
    popen: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:  # the child keeps its own descriptor
            self.popen = subprocess.Popen(
                self.argv, cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT
            )

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
        deadline = time.monotonic() + 10
        while True:
            try:
                self.redis().ping()
                return
            except redis.ConnectionError:
                assert time.monotonic() < deadline, "the stack's redis-server did not start"
                time.sleep(0.05)

    def url(self, gateway: int) -> str:
        return f"http://127.0.0.1:{self.gateway_ports[gateway]}"

    def api(self, gateway: int = 0) -> ApiClient:
        return ApiClient(self.url(gateway))

    def user(self) -> Session:
        name = f"u{uuid.uuid4().hex[:10]}"
        return self.api().register_and_login(name, "password123")

    def add(self, name: str, argv: list[str]) -> Process:
        process = Process(name, argv, self.env, self.workdir / f"{name}.log")
        self.processes[name] = process
        process.start()
        return process

    def restart(self, name: str) -> None:
        """SIGKILL a process and start it again (Redis comes back empty)."""
        process = self.processes[name]
        process.kill()
        if name == "redis":
            self.start_redis()
            return
        process.start()
        if name.startswith("gateway"):
            wait_http(self.url(int(name[-1])) + "/healthz")

    def logs(self) -> str:
        return "\n".join(
            f"--- {p.name}\n{p.log.read_text(errors='replace')[-4000:]}"
            for p in self.processes.values()
            if p.log.exists()
        )

    def stop(self) -> None:
        for process in self.processes.values():
            process.stop()


def wait_http(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def warm_up(stack: Stack) -> None:
    """One message through the whole path: the consumer has joined its group."""
    alice, bob = stack.user(), stack.user()
    with stack.api(0).connect(alice.token) as conn:
        conn.wait_synced()
        conn.wait_ack(conn.send_nowait("warm-up", to=bob.user_id), timeout=60)


def stack_env(database_url: str, workdir: Path, unique: str, redis_port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMCHAT_")}
    env.update(
        IMCHAT_DATA_DIR=str(workdir / "var"),
        IMCHAT_DATABASE_URL=database_url,
        IMCHAT_REDIS_URL=f"redis://127.0.0.1:{redis_port}/{STACK_REDIS_DB}",
        IMCHAT_CELERY_BROKER_URL=f"redis://127.0.0.1:{redis_port}/{CELERY_REDIS_DB}",
        IMCHAT_KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:9092",
        IMCHAT_KAFKA_REPLICATION_FACTOR="1",
        IMCHAT_KAFKA_MIN_INSYNC_REPLICAS="1",
        IMCHAT_KAFKA_CONSUMER_GROUP=f"imchat-delivery-{unique}",
        IMCHAT_ETCD_ENDPOINTS="http://127.0.0.1:2379",
        IMCHAT_ETCD_PREFIX=f"/imchat-stack-{unique}",
        IMCHAT_SECRET_KEY="stack-test-secret-" + unique,
        # Tests register many users from one address, and need no slow hashes.
        IMCHAT_REGISTER_LIMIT_PER_ADDRESS="0",
        IMCHAT_LOGIN_LIMIT_PER_ADDRESS="0",
        IMCHAT_PASSWORD_HASH_TIME_COST="1",
        IMCHAT_PASSWORD_HASH_MEMORY_KIB="1024",
        IMCHAT_PASSWORD_HASH_PARALLELISM="1",
        PYTHONPATH=str(ROOT),
    )
    return env


@pytest.fixture(scope="session")
def stack(
    mysql_url: str,
    redis_url: str,
    kafka_bootstrap: str,
    etcd_endpoints: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stack]:
    unique = uuid.uuid4().hex[:8]
    workdir = tmp_path_factory.mktemp("stack")
    redis_port = free_port()
    env = stack_env(mysql_url, workdir, unique, redis_port)
    migrate.upgrade(load_settings(environ=env))
    subprocess.run([sys.executable, "-m", "imchat", "create-topics"], env=env, cwd=ROOT, check=True)
    stack = Stack(env, workdir, [free_port(), free_port()], redis_port)
    try:
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
        yield stack
    except BaseException:
        print(stack.logs())
        raise
    finally:
        stack.stop()
