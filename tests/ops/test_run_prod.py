"""`make run-prod`'s process set: the Procfile under honcho, on the real local services.

deploy/local.env is the configuration, with what must not be shared with
other runs replaced: a throwaway database, a consumer group, an etcd prefix,
Redis databases and free ports of its own.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from imchat.client import ApiClient, ChatConnection
from imchat.config import load_settings
from imchat.ops import migrate
from tests.support.waiting import free_port, http_get, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
PROCESSES = ("web", "consumer", "worker", "beat", "flower")


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=value lines, as honcho reads them (comments and blank lines skipped)."""
    pairs = (line.split("=", 1) for line in path.read_text().splitlines())
    return {k.strip(): v.strip() for k, v in (p for p in pairs if len(p) == 2) if k[:1] != "#"}


@dataclass
class ProdSet:
    url: str
    flower_url: str
    flower_auth: tuple[str, str]
    honcho: subprocess.Popen[bytes]
    log: Path


@pytest.fixture
def database(mysql_url: str) -> Iterator[str]:
    """A migrated database of its own on the test MariaDB, dropped afterwards."""
    server = make_url(mysql_url)
    name = f"imchat_prod_{uuid.uuid4().hex[:10]}"
    admin = create_engine(server.set(database=""), poolclass=NullPool)
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4"))
    try:
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS `{name}`"))
        admin.dispose()


def prod_env(database: str, redis_url: str, kafka: str, etcd: str, workdir: Path) -> dict[str, str]:
    env = read_env_file(ROOT / "deploy" / "local.env")
    unique = uuid.uuid4().hex[:8]
    parts = urlsplit(redis_url)
    redis_host = f"{parts.scheme}://{parts.netloc}"
    env.update(
        IMCHAT_DATA_DIR=str(workdir / "var"),
        IMCHAT_DATABASE_URL=database,
        # Databases of Redis no other test uses: the Celery queue must not be shared.
        IMCHAT_REDIS_URL=f"{redis_host}/12",
        IMCHAT_CELERY_BROKER_URL=f"{redis_host}/13",
        IMCHAT_KAFKA_BOOTSTRAP_SERVERS=kafka,
        IMCHAT_ETCD_ENDPOINTS=etcd,
        IMCHAT_KAFKA_CONSUMER_GROUP=f"imchat-prod-{unique}",
        IMCHAT_KAFKA_TOPIC_PREFIX=f"prod-{unique}.",
        IMCHAT_ETCD_PREFIX=f"/imchat-prod-{unique}",
        # Many users from one address, and no slow hashes: this is not a login test.
        IMCHAT_REGISTER_LIMIT_PER_ADDRESS="0",
        IMCHAT_LOGIN_LIMIT_PER_ADDRESS="0",
        IMCHAT_PASSWORD_HASH_TIME_COST="1",
        IMCHAT_PASSWORD_HASH_MEMORY_KIB="1024",
        IMCHAT_PASSWORD_HASH_PARALLELISM="1",
        PORT=str(free_port()),
        FLOWER_PORT=str(free_port()),
        FLOWER_BASIC_AUTH=f"ops:{uuid.uuid4().hex}",
    )
    return env


def wait_http(url: str, honcho: subprocess.Popen[bytes], timeout: float = 40.0) -> None:
    def answered() -> bool:
        assert honcho.poll() is None, "honcho stopped: a process of the set exited"
        try:
            http_get(url)
        except OSError:
            return False
        return True

    wait_for(answered, timeout, f"{url} to answer", interval=0.2)


@pytest.fixture
def prod(
    database: str,
    redis_url: str,
    kafka_bootstrap: str,
    etcd_endpoints: str,
    tmp_path: Path,
) -> Iterator[ProdSet]:
    env = prod_env(database, redis_url, kafka_bootstrap, etcd_endpoints, tmp_path)
    env_file = tmp_path / "prod.env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in env.items()))
    os_env = {k: v for k, v in os.environ.items() if not k.startswith("IMCHAT_")}
    os_env.update(env, PATH=f"{BIN}:{os.environ['PATH']}", PYTHONPATH=str(ROOT))
    # What `make run-prod` does before honcho: migrate, create the topics.
    migrate.upgrade(load_settings(environ=env))
    create_topics = [sys.executable, "-m", "imchat", "create-topics"]
    subprocess.run(create_topics, env=os_env, cwd=ROOT, check=True, capture_output=True)
    # The Procfile's paths are relative to the directory it runs in: run it from the
    # temporary one (beat's schedule file under ./var stays this run's), with the
    # repository's deploy/ (gunicorn.conf.py) reachable there.
    (tmp_path / "var").mkdir(exist_ok=True)
    (tmp_path / "deploy").symlink_to(ROOT / "deploy")
    log = tmp_path / "honcho.log"
    honcho = [str(BIN / "honcho"), "start", "-f", str(ROOT / "Procfile"), "-e", str(env_file)]
    with log.open("wb") as out:
        process = subprocess.Popen(
            honcho,
            cwd=tmp_path,
            env=os_env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    user, password = env["FLOWER_BASIC_AUTH"].split(":", 1)
    prod_set = ProdSet(
        f"http://127.0.0.1:{env['PORT']}",
        f"http://127.0.0.1:{env['FLOWER_PORT']}",
        (user, password),
        process,
        log,
    )
    try:
        wait_http(prod_set.url + "/readyz", process)
        yield prod_set
    except BaseException:
        print(log.read_text(errors="replace")[-6000:])
        raise
    finally:
        stop(process)


def stop(honcho: subprocess.Popen[bytes]) -> None:
    """SIGTERM to honcho's process group, as a terminal's Ctrl-C would; SIGKILL if it hangs."""
    if honcho.poll() is None:
        os.killpg(honcho.pid, signal.SIGTERM)
        try:
            honcho.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(honcho.pid, signal.SIGKILL)
            honcho.wait(5)


def connect(api: ApiClient, token: str) -> ChatConnection:
    conn = api.connect(token, timeout=30)
    conn.wait_synced()
    return conn


def test_the_procfile_set_carries_direct_and_group_messages(prod: ProdSet) -> None:
    api = ApiClient(prod.url)
    alice, bob, carol = (
        api.register_and_login(f"p{uuid.uuid4().hex[:10]}", "password123") for _ in range(3)
    )
    group = api.create_group(alice.token, "ops", [bob.user_id, carol.user_id])

    with connect(api, alice.token) as a, connect(api, carol.token) as c:
        # The first ack waits for the consumer to join its group: a generous timeout.
        direct = a.wait_ack(a.send_nowait("hello bob", to=bob.user_id), timeout=40)
        grouped = a.send("hello group", group=group["group_id"])
        live = c.receive(timeout=30)
    assert (live["msg_id"], live["body"], live["group"]) == (
        grouped["msg_id"],
        "hello group",
        group["group_id"],
    )

    # bob was offline: another client reads both back as pending messages.
    with api.connect(bob.token, timeout=30) as b:
        assert b.wait_synced(timeout=30) == 2
        got = {m["msg_id"]: m for m in (b.receive(timeout=10), b.receive(timeout=10))}
    assert got[direct["msg_id"]]["body"] == "hello bob"
    assert got[direct["msg_id"]]["to"] == bob.user_id
    assert got[grouped["msg_id"]]["group"] == group["group_id"]

    # Flower of the same set sees the Procfile's worker, behind basic auth.
    assert requests.get(prod.flower_url + "/api/workers", timeout=5).status_code == 401
    workers = requests.get(
        prod.flower_url + "/api/workers", auth=prod.flower_auth, params={"refresh": 1}, timeout=15
    )
    assert workers.status_code == 200 and workers.json(), workers.text

    assert prod.honcho.poll() is None, "a process of the set exited"
    started = prod.log.read_text(errors="replace")
    for name in PROCESSES:
        assert f"{name}.1" in started, f"honcho never started {name}"

    # Stopping: SIGTERM to honcho's group ends every process of the set.
    stop(prod.honcho)
    assert prod.honcho.returncode is not None
    with pytest.raises(OSError):
        urllib.request.urlopen(prod.url + "/healthz", timeout=2)
    left = subprocess.run(["pgrep", "-g", str(prod.honcho.pid)], capture_output=True, text=True)
    assert left.stdout.split() == [], "processes of the set outlived honcho"
