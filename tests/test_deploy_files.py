"""The deploy files agree with the code and with the seed infrastructure.

deploy/docker/docker-compose.infra.yml, deploy/docker/docker-compose.yml and
deploy/docker/Dockerfile are read as data (PyYAML) and checked against
imchat.config.Settings, imchat.wire.topics.TOPICS and the seed README's tables, so
that a drift on either side fails here rather than on a deployment.
"""

from __future__ import annotations

import fnmatch
import os
import re
import shlex
import subprocess
import sys
import types
from collections.abc import Mapping
from dataclasses import fields
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from imchat.api.health import check_metrics_exposure
from imchat.config import ENV_PREFIX, Settings, load_settings
from imchat.ops import cli
from imchat.wire.topics import TOPICS, TopicSpec

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[1]
DOCKER_DIR = ROOT / "deploy" / "docker"
INFRA = DOCKER_DIR / "docker-compose.infra.yml"
APP = DOCKER_DIR / "docker-compose.yml"
DOCKERFILE = DOCKER_DIR / "Dockerfile"
LOCAL_ENV = ROOT / "deploy" / "local.env"

# The seed README, "Infrastructure Endpoints": published host ports per service.
SEED_HOST_PORTS: dict[str, set[int]] = {
    "im-etcd-1": {2379, 2380},
    "im-etcd-2": {2381, 2382},
    "im-etcd-3": {2383, 2384},
    "im-mysql": {3307},
    "im-redis": {6380},
    "im-kafka-1": {9093},
    "im-kafka-2": {9094},
    "im-kafka-3": {9095},
}
# The seed README, "Remove Data".
SEED_VOLUMES = {
    "im-mysql-data",
    "im-redis-data",
    "im-etcd-1-data",
    "im-etcd-2-data",
    "im-etcd-3-data",
    "im-kafka-1-data",
    "im-kafka-2-data",
    "im-kafka-3-data",
}
# The seed README, "MySQL Configuration".
SEED_MYSQL_MAX_CONNECTIONS = 500
SEED_POOL_MAX_OPEN = 25
SEED_POOL_MAX_IDLE = 5
# The seed README, "Kafka Configuration" / "etcd Configuration".
SEED_KAFKA_BROKERS = 3
SEED_ETCD_MEMBERS = 3

ETCD = ("im-etcd-1", "im-etcd-2", "im-etcd-3")
KAFKA = ("im-kafka-1", "im-kafka-2", "im-kafka-3")
JOBS = ("kafka-init", "im-migrate")
APP_PROCESSES = ("web", "worker", "beat", "flower", "consumer")

IMCHAT_CLI = ["python", "-m", "imchat"]
WEB_COMMAND = [
    "gunicorn",
    "-k",
    "gevent",
    "--workers",
    "2",
    "--worker-connections",
    "20000",
    "--bind",
    "0.0.0.0:8000",
    "--no-control-socket",
    "app:app",
]

# IMCHAT_* names that are not Settings fields, on purpose.
NON_SETTINGS_VARS = {"IMCHAT_SAMPLE_DATA"}
IMCHAT_VAR = re.compile(r"\b" + ENV_PREFIX + r"[A-Z0-9_]+\b")

# Healthcheck commands expected per kind of infra service.
HEALTHCHECKS = {
    "etcd": ("etcdctl", "endpoint health"),
    "mysql": ("mysqladmin", "ping"),
    "redis": ("redis-cli", "ping"),
    "kafka": ("kafka-broker-api-versions", "kafka-topics"),
}


# --- reading the files --------------------------------------------------------------


@cache
def compose(path: Path) -> dict[str, Any]:
    assert path.is_file(), f"{path.relative_to(ROOT)} is missing"
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict), f"{path.name}: not a YAML mapping"
    assert isinstance(data.get("services"), dict), f"{path.name}: no services mapping"
    return data


def services(path: Path) -> dict[str, dict[str, Any]]:
    return compose(path)["services"]


def service(path: Path, name: str) -> dict[str, Any]:
    svcs = services(path)
    assert name in svcs, f"{path.name}: service {name} is missing (has {sorted(svcs)})"
    return svcs[name]


def where(path: Path, name: str) -> str:
    return f"{path.name}: service {name}"


def argv(value: Any) -> list[str]:
    """A compose command (string or list) as an argument vector."""
    if value is None:
        return []
    if isinstance(value, str):
        return shlex.split(value)
    return [str(v) for v in value]


def env(path: Path, name: str) -> dict[str, str]:
    raw = service(path, name).get("environment") or {}
    if isinstance(raw, list):
        pairs = (item.split("=", 1) for item in raw)
        return {k: v for k, v in pairs}
    return {k: "" if v is None else str(v) for k, v in raw.items()}


def published_ports(path: Path, name: str) -> dict[int, int]:
    """Host port -> container port of a service."""
    result: dict[int, int] = {}
    for entry in service(path, name).get("ports") or []:
        if isinstance(entry, dict):
            result[int(entry["published"])] = int(entry["target"])
            continue
        assert isinstance(entry, str), (
            f"{where(path, name)}: port {entry!r} must be a quoted string "
            "(YAML 1.1 reads e.g. an unquoted 22:22 as the base-60 number 1342)"
        )
        parts = entry.split("/")[0].split(":")
        assert len(parts) >= 2, f"{where(path, name)}: port {entry!r} publishes no host port"
        result[int(parts[-2])] = int(parts[-1])
    return result


def healthcheck_text(path: Path, name: str) -> str:
    check = service(path, name).get("healthcheck") or {}
    test = check.get("test")
    if isinstance(test, list):
        test = " ".join(str(t) for t in test[1:] if t)
    return "" if check.get("disable") else str(test or "")


def options(args: list[str]) -> dict[str, list[str]]:
    """The `--opt value...` options of an argument vector.

    Values up to the next option are joined by spaces (`--save 900 1` -> "900 1");
    `--opt=value` works too; a repeated option keeps every value.
    """
    found: dict[str, list[str]] = {}
    values: list[str] | None = None
    for arg in args:
        if arg.startswith("--"):
            key, eq, inline = arg.partition("=")
            values = found.setdefault(key, [])
            values.append(inline if eq else "")
            if eq:
                values = None
        elif arg.startswith("-"):
            values = None
        elif values is not None:
            values[-1] = f"{values[-1]} {arg}".strip()
    return found


def csv(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


def kafka_internal_listener(name: str) -> str:
    """host:port of the broker's inter-broker listener, as advertised."""
    broker = env(INFRA, name)
    listener = broker.get("KAFKA_INTER_BROKER_LISTENER_NAME", "PLAINTEXT")
    for advertised in csv(broker.get("KAFKA_ADVERTISED_LISTENERS", "")):
        scheme, _, address = advertised.partition("://")
        if scheme == listener:
            return address
    raise AssertionError(f"{where(INFRA, name)}: no advertised {listener} listener")


def infra_service_kinds() -> dict[str, str]:
    kinds = {}
    for name, svc in services(INFRA).items():
        image = str(svc.get("image", ""))
        for kind in HEALTHCHECKS:
            if kind in image:
                kinds[name] = kind
    return kinds


INTERPOLATION = re.compile(r"\$\$|\$\{(\w+)(?::?([-?])([^}]*))?\}")


def interpolate(value: str, host: Mapping[str, str]) -> str:
    """What compose makes of a value: `$$`, `${X}`, `${X:-default}`, `${X:?error}`."""

    def substitute(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, op, arg = match.groups()
        current = host.get(name, "")
        if not current and op == "-":
            return arg
        assert current or op != "?", f"compose refuses to start: {name} unset ({arg})"
        return current

    return INTERPOLATION.sub(substitute, value)


def imchat_cli_args(path: Path, name: str, tmp_path: Path, environ: Mapping[str, str]) -> list[str]:
    """The arguments a service's command passes to `python -m imchat`.

    A `sh -c` wrapper is run for real, with a stand-in `python` that records its argv.
    """
    args = [interpolate(a, {}) for a in argv(service(path, name).get("command"))]
    assert not service(path, name).get("entrypoint"), f"{where(path, name)}: entrypoint"
    if args[:3] == IMCHAT_CLI:
        return args[3:]
    assert args[:2] == ["sh", "-c"], f"{where(path, name)}: command {args} runs no imchat CLI"
    recorded = tmp_path / "argv"
    fake_python = tmp_path / "python"
    fake_python.write_text('#!/bin/sh\nprintf "%s\\n" "$@" > "$FAKE_PYTHON_ARGV"\n')
    fake_python.chmod(0o755)
    run_env = {"PATH": f"{tmp_path}{os.pathsep}{os.defpath}", "FAKE_PYTHON_ARGV": str(recorded)}
    subprocess.run(["sh", "-c", args[2]], env={**environ, **run_env}, check=True, timeout=30)
    called = recorded.read_text().splitlines()
    assert called[:2] == IMCHAT_CLI[1:], f"{where(path, name)}: runs python {called}"
    return called[2:]


def is_app_image(path: Path, name: str) -> bool:
    build = service(path, name).get("build")
    if build is None:
        return False
    if isinstance(build, str):
        build = {"context": build}
    context = (path.parent / build.get("context", ".")).resolve()
    return (context / build.get("dockerfile", "Dockerfile")).resolve() == DOCKERFILE


# --- the seed's endpoints, volumes and images ---------------------------------------


@pytest.mark.parametrize("name", sorted(SEED_HOST_PORTS))
def test_host_ports_are_the_seeds(name: str) -> None:
    ports = published_ports(INFRA, name)
    assert set(ports) == SEED_HOST_PORTS[name], (
        f"{where(INFRA, name)}: host ports {sorted(ports)} != seed {sorted(SEED_HOST_PORTS[name])}"
    )


def test_no_other_infra_service_publishes_ports() -> None:
    for name in services(INFRA):
        if name not in SEED_HOST_PORTS:
            assert not published_ports(INFRA, name), f"{where(INFRA, name)}: publishes ports"


def test_named_volumes_are_the_seeds() -> None:
    declared = compose(INFRA).get("volumes") or {}
    names = {(spec or {}).get("name", key) for key, spec in declared.items()}
    assert names == SEED_VOLUMES, f"{INFRA.name}: volumes {sorted(names)} != seed"
    for name in SEED_HOST_PORTS:
        mounts = [str(v).split(":")[0] for v in service(INFRA, name).get("volumes") or []]
        assert f"{name}-data" in mounts, f"{where(INFRA, name)}: does not mount {name}-data"


def test_infra_is_three_etcd_one_mysql_one_redis_three_kafka() -> None:
    kinds = infra_service_kinds()
    by_kind = {k: sorted(n for n, kind in kinds.items() if kind == k) for k in HEALTHCHECKS}
    assert by_kind == {
        "etcd": list(ETCD),
        "mysql": ["im-mysql"],
        "redis": ["im-redis"],
        "kafka": list(KAFKA),
    }, f"{INFRA.name}: infra services by image {by_kind}"
    assert str(service(INFRA, "im-mysql")["image"]).startswith("mysql:8"), (
        f"{where(INFRA, 'im-mysql')}: not MySQL 8"
    )
    assert str(service(INFRA, "im-redis")["image"]).startswith("redis:7"), (
        f"{where(INFRA, 'im-redis')}: not Redis 7"
    )


def test_every_long_running_infra_service_has_a_healthcheck() -> None:
    kinds = infra_service_kinds()
    for name in services(INFRA):
        if name in JOBS:
            continue
        assert name in kinds, f"{where(INFRA, name)}: unknown kind of infra service"
        text = healthcheck_text(INFRA, name)
        assert text, f"{where(INFRA, name)}: no healthcheck"
        expected = HEALTHCHECKS[kinds[name]]
        if kinds[name] == "kafka":
            assert any(tool in text for tool in expected), f"{where(INFRA, name)}: {text!r}"
        else:
            assert all(part in text for part in expected), f"{where(INFRA, name)}: {text!r}"


def test_jobs_run_once_after_their_services_are_healthy() -> None:
    needs = {"kafka-init": set(KAFKA), "im-migrate": {"im-mysql"}}
    for name, deps in needs.items():
        job = service(INFRA, name)
        assert str(job.get("restart", "no")) == "no", f"{where(INFRA, name)}: must not restart"
        depends = job.get("depends_on") or {}
        assert isinstance(depends, dict), f"{where(INFRA, name)}: depends_on needs conditions"
        for dep in deps:
            condition = (depends.get(dep) or {}).get("condition")
            assert condition == "service_healthy", (
                f"{where(INFRA, name)}: depends_on {dep} is {condition!r}, not service_healthy"
            )
        assert is_app_image(INFRA, name), f"{where(INFRA, name)}: not built from {DOCKERFILE}"


# --- etcd ---------------------------------------------------------------------------


def test_etcd_is_one_three_member_cluster() -> None:
    clusters = {env(INFRA, n).get("ETCD_INITIAL_CLUSTER", "") for n in ETCD}
    assert len(clusters) == 1, f"{INFRA.name}: etcd nodes disagree on ETCD_INITIAL_CLUSTER"
    members = dict(m.split("=", 1) for m in csv(clusters.pop()))
    assert len(members) == SEED_ETCD_MEMBERS, f"{INFRA.name}: etcd members {members}"
    for name in ETCD:
        node = env(INFRA, name)
        member = node.get("ETCD_NAME")
        assert member in members, f"{where(INFRA, name)}: {member} not in the initial cluster"
        assert node.get("ETCD_INITIAL_ADVERTISE_PEER_URLS") == members[member], (
            f"{where(INFRA, name)}: peer URL differs from the initial cluster"
        )
        assert node.get("ETCD_INITIAL_CLUSTER_STATE") == "new", f"{where(INFRA, name)}"
        assert urlsplit(node["ETCD_ADVERTISE_CLIENT_URLS"]).hostname == name, (
            f"{where(INFRA, name)}: advertises a client URL that is not its service name"
        )


# --- MySQL --------------------------------------------------------------------------


def test_mysql_is_the_seeds_database() -> None:
    mysql = env(INFRA, "im-mysql")
    assert (mysql.get("MYSQL_DATABASE"), mysql.get("MYSQL_USER"), mysql.get("MYSQL_PASSWORD")) == (
        "im_chat",
        "im_service",
        "im_service_password",
    ), f"{where(INFRA, 'im-mysql')}: database/user/password differ from the seed"
    opts = options(argv(service(INFRA, "im-mysql").get("command")))
    max_conn = opts.get("--max-connections") or opts.get("--max_connections")
    assert max_conn == [str(SEED_MYSQL_MAX_CONNECTIONS)], (
        f"{where(INFRA, 'im-mysql')}: max connections {max_conn}"
    )


def test_pool_settings_are_the_seeds() -> None:
    settings = Settings()
    assert settings.db_pool_size == SEED_POOL_MAX_IDLE, "Settings.db_pool_size != seed 5 idle"
    assert settings.db_pool_size + settings.db_max_overflow == SEED_POOL_MAX_OPEN, (
        "Settings.db_pool_size + db_max_overflow != seed 25 open"
    )


def test_app_processes_fit_in_mysql_max_connections() -> None:
    """Every process that may open the pool, counted generously, stays under 500."""
    settings = Settings()
    per_process = settings.db_pool_size + settings.db_max_overflow
    processes = 1  # im-migrate
    for name in APP_PROCESSES:
        opts = options(argv(service(APP, name).get("command")))
        forks = opts.get("--workers") or opts.get("--concurrency") or ["0"]
        processes += 1 + int(forks[-1])  # the parent plus its forks
    assert processes * per_process <= SEED_MYSQL_MAX_CONNECTIONS, (
        f"{APP.name}: {processes} processes x {per_process} connections > max_connections"
    )


# --- Redis --------------------------------------------------------------------------


def test_redis_persistence_and_eviction_are_the_seeds() -> None:
    args = argv(service(INFRA, "im-redis").get("command"))
    opts = options(args)
    label = where(INFRA, "im-redis")
    assert args[:1] == ["redis-server"], f"{label}: command {args}"
    assert opts.get("--appendonly") == ["yes"], f"{label}: AOF is off"
    assert opts.get("--appendfsync") == ["everysec"], f"{label}: appendfsync"
    saves = opts.get("--save", [])
    assert saves and all(re.fullmatch(r"\d+ \d+", s) for s in saves), f"{label}: RDB {saves}"
    assert opts.get("--maxmemory") == ["2gb"], f"{label}: maxmemory"
    assert opts.get("--maxmemory-policy") == ["allkeys-lru"], f"{label}: eviction policy"
    text = INFRA.read_text()
    assert "allkeys-lru may evict sequence keys" in text, f"{label}: eviction comment is gone"
    assert "docs/architecture.md" in text, f"{label}: comment no longer points at the docs"


# --- Kafka --------------------------------------------------------------------------


def test_kafka_is_three_kraft_brokers_with_the_codes_replication() -> None:
    settings = Settings()
    assert len(KAFKA) == SEED_KAFKA_BROKERS
    node_ids: dict[str, str] = {}
    for name in KAFKA:
        broker, label = env(INFRA, name), where(INFRA, name)
        assert set(csv(broker.get("KAFKA_PROCESS_ROLES", ""))) == {"broker", "controller"}, label
        assert not any("ZOOKEEPER" in key for key in broker), f"{label}: ZooKeeper settings"
        assert broker.get("KAFKA_DEFAULT_REPLICATION_FACTOR") == str(
            settings.kafka_replication_factor
        ), f"{label}: replication factor != Settings.kafka_replication_factor"
        assert broker.get("KAFKA_MIN_INSYNC_REPLICAS") == str(settings.kafka_min_insync_replicas), (
            f"{label}: min.insync.replicas != Settings.kafka_min_insync_replicas"
        )
        assert broker.get("KAFKA_AUTO_CREATE_TOPICS_ENABLE", "").lower() == "false", (
            f"{label}: topic auto-creation is on"
        )
        node_ids[broker["KAFKA_NODE_ID"]] = name
    assert len(node_ids) == SEED_KAFKA_BROKERS, f"{INFRA.name}: Kafka node ids are not unique"
    voters = {env(INFRA, n).get("KAFKA_CONTROLLER_QUORUM_VOTERS", "") for n in KAFKA}
    assert len(voters) == 1, f"{INFRA.name}: Kafka brokers disagree on the quorum voters"
    (voter_list,) = voters
    quorum = {vid: addr.rsplit(":", 1)[0] for vid, addr in (v.split("@") for v in csv(voter_list))}
    assert quorum == node_ids, f"{INFRA.name}: quorum {quorum} != brokers {node_ids}"
    cluster_ids = {env(INFRA, n).get("CLUSTER_ID") for n in KAFKA}
    assert len(cluster_ids) == 1 and None not in cluster_ids, f"{INFRA.name}: CLUSTER_ID"
    assert settings.kafka_min_insync_replicas < settings.kafka_replication_factor <= len(KAFKA)


def test_kafka_init_creates_every_topic_of_the_code(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """kafka-init runs `python -m imchat create-topics`, which creates imchat.wire.topics.TOPICS.

    The real CLI runs with the job's environment; only the Kafka admin behind
    imchat.container.Services is a stand-in that records what it is asked to create.
    """
    label = where(INFRA, "kafka-init")
    job = service(INFRA, "kafka-init")
    job_env = {k: interpolate(v, {}) for k, v in env(INFRA, "kafka-init").items()}
    args = imchat_cli_args(INFRA, "kafka-init", tmp_path, job_env)
    assert args == ["create-topics"], f"{label}: runs python -m imchat {args}"
    # No topic list in the compose file that could drift from TOPICS.
    hard_coded = [t.name for t in TOPICS if t.name in yaml.safe_dump(job)]
    assert not hard_coded, f"{label}: topics {hard_coded} are hard-coded"

    created: list[tuple[list[TopicSpec], int, int]] = []
    seen: list[Settings] = []

    class FakeBus:
        def ensure_topics(self, specs: Any, replication: int, min_isr: int) -> set[str]:
            created.append((list(specs), replication, min_isr))
            return {spec.name for spec in specs}

    class FakeServices:
        def __init__(self, settings: Settings) -> None:
            seen.append(settings)
            self.bus = FakeBus()

        def close(self) -> None:
            pass

    container = types.ModuleType("imchat.container")
    container.Services = FakeServices  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "imchat.container", container)
    for var in [v for v in os.environ if v.startswith(ENV_PREFIX)]:
        monkeypatch.delenv(var)
    for var, value in job_env.items():
        monkeypatch.setenv(var, value)

    assert cli.main(args) == 0, f"{label}: create-topics failed"
    capsys.readouterr()
    assert len(created) == 1, f"{label}: create-topics made {len(created)} admin calls"
    specs, replication, min_isr = created[0]
    assert specs == list(TOPICS) and specs, f"{label}: creates {[s.name for s in specs]}"
    defaults = Settings()
    assert replication == defaults.kafka_replication_factor, f"{label}: replication {replication}"
    assert min_isr == defaults.kafka_min_insync_replicas, f"{label}: min ISR {min_isr}"
    assert set(csv(seen[0].kafka_bootstrap_servers)) == {
        kafka_internal_listener(n) for n in KAFKA
    }, f"{label}: bootstrap servers are not the three brokers"
    for topic in specs:
        assert int(topic.config(min_isr)["min.insync.replicas"]) < replication, (
            f"{label}: topic {topic.name} could not take a write with one broker down"
        )


@pytest.mark.parametrize(("host_value", "sample_data"), [(None, False), ("0", False), ("1", True)])
def test_im_migrate_upgrades_and_loads_sample_data_only_when_asked(
    tmp_path: Path, host_value: str | None, sample_data: bool
) -> None:
    label = where(INFRA, "im-migrate")
    host = {} if host_value is None else {"IMCHAT_SAMPLE_DATA": host_value}
    job_env = {k: interpolate(v, host) for k, v in env(INFRA, "im-migrate").items()}
    args = imchat_cli_args(INFRA, "im-migrate", tmp_path, job_env)
    parsed = cli.build_parser().parse_args(args)
    assert (parsed.func, parsed.action, parsed.revision) == (cli.cmd_db, "upgrade", None), (
        f"{label}: runs python -m imchat {args}"
    )
    assert parsed.sample_data is sample_data, (
        f"{label}: IMCHAT_SAMPLE_DATA={host_value} gives sample_data={parsed.sample_data}"
    )


def test_im_migrate_migrates_the_apps_database() -> None:
    migrate_url = env(INFRA, "im-migrate").get("IMCHAT_DATABASE_URL")
    assert migrate_url == env(APP, "web").get("IMCHAT_DATABASE_URL"), (
        f"{where(INFRA, 'im-migrate')}: migrates another database than the app uses"
    )


def test_consumer_runs_an_existing_imchat_command() -> None:
    args = argv(service(APP, "consumer").get("command"))
    assert args[:3] == IMCHAT_CLI, f"{where(APP, 'consumer')}: command {args}"
    cli.build_parser().parse_args(args[3:])


# --- the app processes --------------------------------------------------------------


def test_app_has_every_process() -> None:
    assert set(APP_PROCESSES) <= set(services(APP)), f"{APP.name}: services {sorted(services(APP))}"
    expected = {
        "web": WEB_COMMAND,
        "worker": ["celery", "-A", "tasks", "worker", "--loglevel", "INFO", "--concurrency", "2"],
        "beat": ["celery", "-A", "tasks", "beat", "--loglevel", "INFO"],
        "consumer": ["python", "-m", "imchat", "consume"],
    }
    for name, command in expected.items():
        got = argv(service(APP, name).get("command"))
        assert got == command, f"{where(APP, name)}: command {got}"
    flower = argv(service(APP, "flower").get("command"))
    assert flower[:4] == ["celery", "-A", "tasks", "flower"], f"{where(APP, 'flower')}: {flower}"
    auth = options(flower).get("--basic-auth", [""])[0]
    assert auth.startswith("${FLOWER_BASIC_AUTH"), f"{where(APP, 'flower')}: no basic auth"
    for name in APP_PROCESSES:
        assert is_app_image(APP, name), f"{where(APP, name)}: not built from {DOCKERFILE}"


def test_app_env_points_at_the_infra_services() -> None:
    infra = services(INFRA)
    mysql = env(INFRA, "im-mysql")
    etcd_urls = {env(INFRA, n)["ETCD_ADVERTISE_CLIENT_URLS"] for n in ETCD}
    brokers = {kafka_internal_listener(n) for n in KAFKA}
    for name in APP_PROCESSES:
        app_env, label = env(APP, name), where(APP, name)
        settings = load_settings(environ=app_env)
        db = urlsplit(settings.database_url)
        assert db.scheme == "mysql+pymysql" and db.hostname == "im-mysql" and db.port == 3306, (
            f"{label}: IMCHAT_DATABASE_URL {settings.database_url}"
        )
        assert (db.username, db.password, db.path.lstrip("/")) == (
            mysql["MYSQL_USER"],
            mysql["MYSQL_PASSWORD"],
            mysql["MYSQL_DATABASE"],
        ), f"{label}: IMCHAT_DATABASE_URL credentials differ from im-mysql"
        for var, url in (
            ("IMCHAT_REDIS_URL", settings.redis_url),
            ("IMCHAT_CELERY_BROKER_URL", settings.celery_broker_url),
        ):
            parts = urlsplit(url)
            assert (parts.scheme, parts.hostname, parts.port) == ("redis", "im-redis", 6379), (
                f"{label}: {var} {url}"
            )
        assert settings.redis_url != settings.celery_broker_url, f"{label}: same Redis db"
        assert set(csv(settings.kafka_bootstrap_servers)) == brokers, (
            f"{label}: IMCHAT_KAFKA_BOOTSTRAP_SERVERS is not the brokers' internal listeners"
        )
        assert set(settings.etcd_endpoint_list) == etcd_urls, (
            f"{label}: IMCHAT_ETCD_ENDPOINTS is not the three etcd nodes"
        )
        assert app_env.get("IMCHAT_SECRET_KEY", "").startswith("${IMCHAT_SECRET_KEY:?"), (
            f"{label}: IMCHAT_SECRET_KEY must be required from the environment"
        )
        assert app_env.get("IMCHAT_VAPID_PRIVATE_KEY", "").startswith(
            "${IMCHAT_VAPID_PRIVATE_KEY:?"
        ), f"{label}: IMCHAT_VAPID_PRIVATE_KEY must be required from the environment"
        hosts = {
            urlsplit(u).hostname
            for u in (settings.database_url, settings.redis_url, settings.celery_broker_url)
        }
        hosts |= {urlsplit(u).hostname for u in settings.etcd_endpoint_list}
        hosts |= {b.rsplit(":", 1)[0] for b in csv(settings.kafka_bootstrap_servers)}
        for host in hosts:
            assert host in infra, f"{label}: points at {host}, not a service of {INFRA.name}"


def test_web_requires_a_metrics_token_and_would_start_with_it() -> None:
    """The web process refuses to start with real backends and an open /metrics
    (imchat.api.health.check_metrics_exposure): compose must demand the token."""
    label = where(APP, "web")
    web_env = env(APP, "web")
    assert web_env.get("IMCHAT_METRICS_TOKEN", "").startswith("${IMCHAT_METRICS_TOKEN:?"), (
        f"{label}: IMCHAT_METRICS_TOKEN must be required from the environment"
    )
    assert "IMCHAT_METRICS_PUBLIC" not in web_env, f"{label}: /metrics made public"
    host = {"IMCHAT_SECRET_KEY": "s" * 32, "IMCHAT_METRICS_TOKEN": "t" * 32}
    host |= {"IMCHAT_VAPID_PRIVATE_KEY": "v" * 43}
    settings = load_settings(environ={k: interpolate(v, host) for k, v in web_env.items()})
    assert not settings.embedded
    check_metrics_exposure(settings)
    with pytest.raises(AssertionError, match="IMCHAT_METRICS_TOKEN unset"):
        interpolate(web_env["IMCHAT_METRICS_TOKEN"], {})
    without = load_settings(environ={**web_env, "IMCHAT_METRICS_TOKEN": ""})
    with pytest.raises(RuntimeError, match="IMCHAT_METRICS_TOKEN must be set"):
        check_metrics_exposure(without)


def test_local_env_sets_a_metrics_token() -> None:
    pairs = (
        line.split("=", 1)
        for line in LOCAL_ENV.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    )
    settings = load_settings(environ=dict(pairs))
    assert not settings.embedded and settings.metrics_token, f"{LOCAL_ENV.name}: no metrics token"
    check_metrics_exposure(settings)


def test_app_and_infra_share_a_network() -> None:
    def network_names(path: Path) -> dict[str, str]:
        declared = compose(path).get("networks") or {}
        return {key: (spec or {}).get("name", key) for key, spec in declared.items()}

    infra_nets, app_nets = network_names(INFRA), network_names(APP)
    for path, nets, names in (
        (INFRA, infra_nets, services(INFRA)),
        (APP, app_nets, APP_PROCESSES),
    ):
        for name in names:
            used = service(path, name).get("networks") or ["default"]
            assert set(used) <= set(nets), f"{where(path, name)}: networks {used} undeclared"
            shared = {nets[n] for n in used} & set(infra_nets.values()) & set(app_nets.values())
            assert shared, f"{where(path, name)}: not on a network of both compose files"


def test_every_imchat_variable_is_a_settings_field() -> None:
    known = {ENV_PREFIX + f.name.upper() for f in fields(Settings)}
    for path in (INFRA, APP, DOCKERFILE):
        named = set(IMCHAT_VAR.findall(path.read_text()))
        unknown = named - known - NON_SETTINGS_VARS
        assert not unknown, f"{path.name}: {sorted(unknown)} are not fields of Settings"
    for path in (INFRA, APP):
        for name in services(path):
            stray = {v for v in env(path, name) if v.startswith(ENV_PREFIX)} - known
            assert stray <= NON_SETTINGS_VARS, f"{where(path, name)}: {sorted(stray)} unknown"


# --- the Dockerfile -----------------------------------------------------------------


def test_dockerfile_is_the_app_image() -> None:
    lines = [line.strip() for line in DOCKERFILE.read_text().splitlines()]
    instructions = [line for line in lines if line and not line.startswith("#")]
    assert "FROM python:3.11-slim" in instructions, f"{DOCKERFILE.name}: base image"
    assert "EXPOSE 8000" in instructions, f"{DOCKERFILE.name}: does not expose 8000"
    assert any("requirements/production.txt" in line for line in instructions), (
        f"{DOCKERFILE.name}: does not install requirements/production.txt"
    )
    users = [line.split()[1] for line in instructions if line.startswith("USER ")]
    assert users and users[-1] not in {"root", "0"}, f"{DOCKERFILE.name}: runs as root"
    cmds = [line for line in instructions if line.startswith("CMD ")]
    assert cmds, f"{DOCKERFILE.name}: no CMD"
    assert yaml.safe_load(cmds[-1][4:]) == WEB_COMMAND, f"{DOCKERFILE.name}: CMD is not web"
    web_ports = published_ports(APP, "web")
    bind = options(WEB_COMMAND)["--bind"][0]
    assert int(bind.rsplit(":", 1)[1]) in web_ports.values(), f"{where(APP, 'web')}: port"


def test_dockerfile_gives_gunicorn_the_deploy_config() -> None:
    """gunicorn picks up ./gunicorn.conf.py in its working directory: the image's
    web process (no -c in its command) runs deploy/gunicorn.conf.py, whose logger
    keeps tokens out of the access log."""
    lines = [line.split() for line in DOCKERFILE.read_text().splitlines()]
    workdirs = [words[1] for words in lines if words[:1] == ["WORKDIR"]]
    copies = [words[1:] for words in lines if words[:1] == ["COPY"]]
    assert ["deploy/gunicorn.conf.py", "gunicorn.conf.py"] in copies, (
        f"{DOCKERFILE.name}: does not COPY deploy/gunicorn.conf.py to ./gunicorn.conf.py"
    )
    assert workdirs and workdirs[-1] == "/app", f"{DOCKERFILE.name}: WORKDIR {workdirs}"
    assert "-c" not in WEB_COMMAND and "--config" not in WEB_COMMAND
    conf = (ROOT / "deploy" / "gunicorn.conf.py").read_text()
    assert 'logger_class = "imchat.access_log.RedactingLogger"' in conf


def test_dockerfile_copies_what_the_processes_import() -> None:
    """gunicorn app:app, celery -A tasks, python -m imchat and its migrations."""
    sources: list[str] = []
    for line in DOCKERFILE.read_text().splitlines():
        words = line.split()
        if words[:1] == ["COPY"] and not any(w.startswith("--from") for w in words):
            sources += [w.rstrip("/") for w in words[1:-1] if not w.startswith("--")]
    for needed in ("app.py", "tasks", "imchat", "migrations"):
        assert (ROOT / needed).exists(), f"{needed} is missing from the repository"
        assert any(fnmatch.fnmatch(needed, src) for src in sources), (
            f"{DOCKERFILE.name}: does not COPY {needed} (copies {sources})"
        )
    for src in sources:
        assert list(ROOT.glob(src)), f"{DOCKERFILE.name}: COPY {src} matches nothing"
