"""The servers under test, each started on 127.0.0.1 with a free port:

- ``echo``: the ceiling, ``benchmarks.echo_app`` under the Procfile's gunicorn
  gevent command line with one worker;
- ``embedded``: imchat with no configuration (SQLite, in-process twins) under
  the same command line, one worker;
- ``production``: the production process set on the real services (MariaDB,
  Redis, the Kafka-protocol broker, etcd), started the way tests/stack starts
  it (its own redis-server, ``python -m imchat consume``, a Celery worker),
  with two gateway workers as the Procfile's web.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from imchat.client import ApiClient, Session
from tests.stack.conftest import Process, Stack, stack_env, warm_up
from tests.support.waiting import free_port, wait_http

ROOT = Path(__file__).resolve().parents[1]
# Registering thousands of users from one address: no rate limits, cheap
# hashes; and a load generator sends far above a person's 100 frames/s.
BENCH_ENV = {
    "IMCHAT_REGISTER_LIMIT_PER_ADDRESS": "0",
    "IMCHAT_LOGIN_LIMIT_PER_ADDRESS": "0",
    "IMCHAT_REGISTER_LIMIT_PER_USERNAME": "0",
    "IMCHAT_LOGIN_LIMIT_PER_USERNAME": "0",
    "IMCHAT_PASSWORD_HASH_TIME_COST": "1",
    "IMCHAT_PASSWORD_HASH_MEMORY_KIB": "1024",
    "IMCHAT_PASSWORD_HASH_PARALLELISM": "1",
    "IMCHAT_FRAME_RATE_PER_SECOND": "1000000",
    "IMCHAT_FRAME_BURST": "1000000",
    "IMCHAT_MAX_CONNECTIONS_PER_USER": "100",
    "IMCHAT_LOG_LEVEL": "WARNING",
}
PASSWORD = "bench-password-1"


def gunicorn_argv(app: str, port: int, workers: int) -> list[str]:
    """The Procfile's web command line, with the worker count spelled out."""
    argv = [sys.executable, "-m", "gunicorn", "-k", "gevent", "--workers", str(workers)]
    argv += ["--worker-connections", "20000", "--bind", f"127.0.0.1:{port}"]
    return [*argv, "--no-control-socket", app]


def raise_fd_limit() -> None:
    """Children inherit the limit: 10,000 sockets need more than the default 1,024."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def children(pid: int) -> list[int]:
    """The direct children of a process (gunicorn's workers)."""
    pids = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        pids += [int(p) for p in (task / "children").read_text().split()]
    return pids


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


@dataclass
class Server:
    """A running server: its base URL, its processes and its gateway workers."""

    kind: str
    stack: Stack
    gateway: Process
    users: list[Session] = field(default_factory=list)

    @property
    def base_url(self) -> str:
        return self.stack.url(0)

    def ws_url(self, session: Session | None = None, query: str = "") -> str:
        port = self.stack.gateway_ports[0]
        token = f"token={session.token}" if session else ""
        return f"ws://127.0.0.1:{port}/ws?{token}{query}"

    def worker_pids(self) -> list[int]:
        assert self.gateway.popen is not None
        return children(self.gateway.popen.pid)

    def worker_rss(self) -> dict[int, int]:
        return {pid: rss_bytes(pid) for pid in self.worker_pids()}

    def pids(self) -> dict[str, int]:
        """Every process of the set, gateway workers included (for py-spy)."""
        found = {name: p.popen.pid for name, p in self.stack.processes.items() if p.popen}
        for index, pid in enumerate(self.worker_pids()):
            found[f"gateway-worker{index}"] = pid
        return found

    def register(self, count: int) -> list[Session]:
        """``count`` new users through the API (16 at a time)."""
        api = ApiClient(self.base_url, timeout=60)
        prefix = uuid.uuid4().hex[:8]

        def one(index: int) -> Session:
            return api.register_and_login(f"b{prefix}_{index}", PASSWORD)

        with ThreadPoolExecutor(16) as pool:
            return list(pool.map(one, range(count)))

    def create_group(self, owner: Session, members: list[Session]) -> str:
        api = ApiClient(self.base_url, timeout=60)
        group = api.create_group(owner.token, "bench", [m.user_id for m in members])
        return str(group["group_id"])


def base_env(workdir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMCHAT_")}
    env.update(BENCH_ENV, IMCHAT_DATA_DIR=str(workdir / "var"), PYTHONPATH=str(ROOT))
    env["IMCHAT_SECRET_KEY"] = "bench-secret-" + uuid.uuid4().hex
    env["IMCHAT_METRICS_TOKEN"] = "bench-metrics-" + uuid.uuid4().hex
    return env


@contextmanager
def single_worker(kind: str, app: str) -> Iterator[Server]:
    """The echo ceiling or the embedded default: one gunicorn gevent worker."""
    raise_fd_limit()
    with tempfile.TemporaryDirectory(prefix=f"bench-{kind}-") as tmp:
        workdir = Path(tmp)
        stack = Stack(base_env(workdir), workdir, [free_port()], redis_port=0)
        try:
            gateway = stack.add("gateway0", gunicorn_argv(app, stack.gateway_ports[0], 1))
            wait_http(stack.url(0) + "/healthz", timeout=60)
            yield Server(kind, stack, gateway)
        except BaseException:
            print(stack.logs(), file=sys.stderr)
            raise
        finally:
            stack.stop()


@contextmanager
def production() -> Iterator[Server]:
    """The production set on the real services, in a throwaway MariaDB database."""
    from sqlalchemy import create_engine, text

    from tests.conftest import REAL

    raise_fd_limit()
    unique = uuid.uuid4().hex[:8]
    database = f"imchat_bench_{unique}"
    admin = create_engine(REAL["mysql"])
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE `{database}` CHARACTER SET utf8mb4"))
    try:
        with tempfile.TemporaryDirectory(prefix="bench-production-") as tmp:
            yield from _production_set(Path(tmp), f"{REAL['mysql']}{database}?charset=utf8mb4")
    finally:
        with admin.connect() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS `{database}`"))
        admin.dispose()


def _production_set(workdir: Path, database_url: str) -> Iterator[Server]:
    from imchat.config import load_settings
    from imchat.ops import migrate

    unique = uuid.uuid4().hex[:8]
    redis_port = free_port()
    env = stack_env(database_url, workdir, unique, redis_port)
    env.update(BENCH_ENV)
    migrate.upgrade(load_settings(environ=env))
    subprocess.run([sys.executable, "-m", "imchat", "create-topics"], env=env, cwd=ROOT, check=True)
    stack = Stack(env, workdir, [free_port()], redis_port)
    try:
        stack.start_redis()
        gateway = stack.add("gateway0", gunicorn_argv("app:app", stack.gateway_ports[0], 2))
        stack.add("consumer", [sys.executable, "-m", "imchat", "consume"])
        celery = [sys.executable, "-m", "celery", "-A", "tasks", "worker", "--concurrency", "2"]
        celery += ["--loglevel", "WARNING", "--without-heartbeat", "--without-gossip"]
        stack.add("worker", [*celery, "--without-mingle"])
        wait_http(stack.url(0) + "/readyz", timeout=60)
        warm_up(stack)
        yield Server("production", stack, gateway)
    except BaseException:
        print(stack.logs(), file=sys.stderr)
        raise
    finally:
        stack.stop()


@contextmanager
def start(kind: str) -> Iterator[Server]:
    """``echo``, ``embedded`` or ``production``."""
    if kind == "echo":
        with single_worker("echo", "benchmarks.echo_app:app") as server:
            yield server
    elif kind == "embedded":
        with single_worker("embedded", "app:app") as server:
            yield server
    else:
        with production() as server:
            yield server


class Loadgen:
    """The load generator in its own process (``python -m benchmarks.loadgen``)."""

    def __init__(self, job: dict[str, Any]) -> None:
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.loadgen"],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.tell(json.dumps(job))

    def tell(self, line: str) -> None:
        assert self.popen.stdin is not None
        self.popen.stdin.write(line + "\n")
        self.popen.stdin.flush()

    def read(self) -> dict[str, Any]:
        assert self.popen.stdout is not None
        line = self.popen.stdout.readline()
        if not line:
            self.popen.wait(10)
            raise RuntimeError(f"the load generator died (exit {self.popen.returncode})")
        result: dict[str, Any] = json.loads(line)
        return result

    def finish(self) -> dict[str, Any]:
        result = self.read()
        self.popen.wait(30)
        return result


def run_job(job: dict[str, Any]) -> dict[str, Any]:
    """One load generator job, start to finish."""
    return Loadgen(job).finish()
