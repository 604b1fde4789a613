"""The infra check's probes, one group per service: etcd, MySQL, Redis, Kafka.

Each ``check_*`` returns the lines of its service (see ``CheckLine``) and never
raises for a down or misconfigured service: it reports it. Every network call
has a timeout of a few seconds. ``imchat.ops.infra_check`` runs them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal

from sqlalchemy import Connection, Engine, create_engine, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from imchat.backends.etcd import probe as etcd_probe
from imchat.config import Settings
from imchat.wire.topics import TOPICS, TopicSpec

Status = Literal["ok", "warn", "fail", "skip"]
MARKS: dict[Status, str] = {"ok": "✓", "warn": "!", "fail": "✗", "skip": "-"}

CONNECT_TIMEOUT = 2.0
KAFKA_TIMEOUT = 3.0
# The history table, split like the seed's tables (16 partitions by key).
HISTORY_TABLE = "messages"
HISTORY_PARTITIONS = 16
HISTORY_PARTITIONED_BY = "KEY(conversation_id)"
MYSQL_DIALECTS = ("mysql", "mariadb")
# Eviction policies that may drop keys without a TTL, such as the seq counters.
EVICTS_PERSISTENT_KEYS = ("allkeys-lru", "allkeys-lfu", "allkeys-random")


@dataclass(frozen=True)
class CheckLine:
    """The outcome of one check of one service."""

    service: str
    check: str
    status: Status
    message: str
    details: Mapping[str, Any] = field(default_factory=dict)

    def render(self) -> str:
        return f"{MARKS[self.status]} {self.service} {self.check}: {self.message}"


def _shown(url: str) -> str:
    """The URL fit for printing: any password masked."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a URL SQLAlchemy can parse: print it as given
        return url


def _line(service: str, check: str, problems: Sequence[str], ok_message: str) -> CheckLine:
    """A pass line with ``ok_message``, or a failure line listing the problems."""
    if problems:
        return CheckLine(service, check, "fail", "; ".join(problems))
    return CheckLine(service, check, "ok", ok_message)


# -------------------------------------------------------------------- etcd
def etcd_endpoint_problems(endpoint: str) -> list[str]:
    """Why ``endpoint`` is not a healthy etcd member (empty when it is)."""
    reason = etcd_probe.endpoint_health(endpoint, CONNECT_TIMEOUT)
    return [] if reason is None else [f"{endpoint} {reason}"]


def check_etcd(endpoints: Sequence[str]) -> list[CheckLine]:
    """Health of every endpoint, then the member count seen by a healthy one."""
    if not endpoints:
        return [CheckLine("etcd", "health", "fail", "no endpoint in IMCHAT_ETCD_ENDPOINTS")]
    with ThreadPoolExecutor(max_workers=len(endpoints)) as pool:
        per_endpoint = list(pool.map(etcd_endpoint_problems, endpoints))
    problems = [p for found in per_endpoint for p in found]
    healthy = [e for e, found in zip(endpoints, per_endpoint, strict=True) if not found]
    n = len(endpoints)
    lines = [
        _line("etcd", "health", problems, f"{n}/{n} endpoints healthy ({', '.join(endpoints)})")
    ]
    if healthy:
        lines.append(_etcd_members_line(healthy[0]))
    return lines


def _etcd_members_line(endpoint: str) -> CheckLine:
    try:
        names = etcd_probe.member_names(endpoint, CONNECT_TIMEOUT)
    except (OSError, ValueError) as exc:
        reason = etcd_probe.failure_reason(exc, CONNECT_TIMEOUT)
        message = f"member list at {endpoint} failed ({reason})"
        return CheckLine("etcd", "members", "fail", message)
    message = f"{len(names)} member{'s' if len(names) != 1 else ''} ({', '.join(names)})"
    return CheckLine("etcd", "members", "ok", message, {"count": len(names), "names": names})


# ------------------------------------------------------------------- MySQL
def _database_engine(url: str) -> Engine:
    connect_args: dict[str, Any] = {}
    if make_url(url).get_backend_name() in MYSQL_DIALECTS:
        connect_args["connect_timeout"] = int(CONNECT_TIMEOUT)
    # NullPool: a one-shot check must leave no connection behind.
    return create_engine(url, poolclass=NullPool, connect_args=connect_args)


def expected_tables() -> list[str]:
    """The tables of the model (users, groups, ..., messages, conversations, ...)."""
    from imchat.stores.models import Base

    return sorted(Base.metadata.tables)


def missing_tables(conn: Connection) -> list[str]:
    """The model's tables that the database lacks."""
    present = set(inspect(conn).get_table_names())
    return [name for name in expected_tables() if name not in present]


def partition_problems(conn: Connection) -> list[str]:
    """The history table must be split in 16 partitions by key on the
    conversation: a page of history then reads one partition."""
    rows = conn.execute(
        text(
            "SELECT PARTITION_METHOD, PARTITION_EXPRESSION FROM information_schema.PARTITIONS"
            " WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = :table"
            " AND PARTITION_NAME IS NOT NULL"
        ),
        {"table": HISTORY_TABLE},
    ).all()
    if len(rows) != HISTORY_PARTITIONS:
        return [f"{HISTORY_TABLE} has {len(rows)} partitions, expects {HISTORY_PARTITIONS}"]
    found = {f"{method}({(expression or '').strip('`').lower()})" for method, expression in rows}
    if found != {HISTORY_PARTITIONED_BY}:
        by = ", ".join(sorted(found))
        return [f"{HISTORY_TABLE} is partitioned by {by}, expects {HISTORY_PARTITIONED_BY}"]
    return []


def migration_problems(settings: Settings) -> list[str]:
    """The database's alembic revision must be the head of migrations/."""
    from imchat.ops import migrate

    try:
        state = migrate.status(settings)
    except Exception as exc:  # e.g. a revision unknown to this checkout
        return [f"cannot read the schema revision ({type(exc).__name__}: {exc})"]
    if state["current"] == state["head"]:
        return []
    where = f"schema at {state['current']}" if state["current"] else "not migrated"
    pending = ", ".join(state["pending"]) or "none"
    return [
        f"{where}, head is {state['head']} (pending: {pending}): run python -m imchat db upgrade"
    ]


def check_mysql(settings: Settings) -> list[CheckLine]:
    """Connect, then tables, partitions (MySQL/MariaDB only) and migration head."""
    engine = _database_engine(settings.database_url)
    shown = _shown(settings.database_url)
    try:
        try:
            conn = engine.connect()
        except Exception as exc:  # any driver's error: reported, never raised
            reason = _driver_reason(exc)
            return [CheckLine("mysql", "connect", "fail", f"{shown} unreachable ({reason})")]
        with conn:
            lines = _mysql_schema_lines(conn, shown)
    finally:
        engine.dispose()
    # After the connection test, so that a down database costs one timeout, not two.
    lines.append(_line("mysql", "migrations", migration_problems(settings), "schema at head"))
    return lines


def _driver_reason(exc: Exception) -> str:
    """The driver's own words: pymysql's (2003, "Can't connect ...") becomes the text alone."""
    orig = getattr(exc, "orig", None) or exc
    args: tuple[Any, ...] = getattr(orig, "args", ())
    reason = args[1] if len(args) == 2 and isinstance(args[1], str) else str(orig)
    return reason.splitlines()[0] if reason else type(orig).__name__


def _mysql_schema_lines(conn: Connection, shown: str) -> list[CheckLine]:
    lines = [CheckLine("mysql", "connect", "ok", f"connected to {shown}")]
    missing = missing_tables(conn)
    problems = [f"table{'s' if len(missing) > 1 else ''} {', '.join(missing)} missing"]
    ok = f"{', '.join(expected_tables())} present"
    lines.append(_line("mysql", "tables", problems if missing else [], ok))
    if conn.dialect.name in MYSQL_DIALECTS and HISTORY_TABLE not in missing:
        ok = f"{HISTORY_TABLE} has {HISTORY_PARTITIONS} partitions ({HISTORY_PARTITIONED_BY})"
        lines.append(_line("mysql", "partitions", partition_problems(conn), ok))
    return lines


# ------------------------------------------------------------------- Redis
def redis_persistence_problems(config: Mapping[str, str]) -> list[str]:
    """What production needs and this Redis lacks: AOF on and an RDB save rule."""
    problems = []
    if config.get("appendonly") != "yes":
        problems.append("AOF off (appendonly no)")
    if not config.get("save", "").strip():
        problems.append("no RDB save rule (save '')")
    return problems


def _redis_client(url: str) -> Any:
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    return redis.Redis.from_url(
        url,
        socket_connect_timeout=CONNECT_TIMEOUT,
        socket_timeout=CONNECT_TIMEOUT,
        retry=Retry(NoBackoff(), 0),  # one attempt: a down Redis is the answer
        decode_responses=True,
    )


def _redis_config(client: Any) -> dict[str, str]:
    config: dict[str, str] = {}
    for name in ("appendonly", "save", "maxmemory-policy"):
        config.update(client.config_get(name))
    return config


def check_redis(url: str, strict: bool) -> list[CheckLine]:
    """PING, then persistence (warn, or fail when strict) and the eviction policy."""
    import redis

    shown = _shown(url)
    client = _redis_client(url)
    try:
        client.ping()
    except redis.RedisError as exc:
        client.close()
        return [CheckLine("redis", "ping", "fail", f"{shown} unreachable ({exc})")]
    lines = [CheckLine("redis", "ping", "ok", f"{shown} answered PING")]
    try:
        config = _redis_config(client)
    except redis.ResponseError as exc:  # CONFIG disabled, as on some managed Redis
        return [*lines, CheckLine("redis", "config", "warn", f"CONFIG GET refused ({exc})")]
    finally:
        client.close()
    return [
        *lines,
        _persistence_line(config, strict),
        _eviction_line(config.get("maxmemory-policy", "?")),
    ]


def _persistence_line(config: Mapping[str, str], strict: bool) -> CheckLine:
    problems = redis_persistence_problems(config)
    details = {"appendonly": config.get("appendonly"), "save": config.get("save")}
    if not problems:
        rule = config.get("save")
        return CheckLine("redis", "persistence", "ok", f"AOF on, RDB save {rule!r}", details)
    if strict:
        return CheckLine("redis", "persistence", "fail", "; ".join(problems), details)
    message = "; ".join(problems) + ": a restart loses data (fine for tests, not production)"
    return CheckLine("redis", "persistence", "warn", message, details)


def _eviction_line(policy: str) -> CheckLine:
    details = {"maxmemory_policy": policy}
    if policy in EVICTS_PERSISTENT_KEYS:
        message = (
            f"maxmemory-policy {policy} may evict sequence keys"
            " (imchat restores them from sequence_snapshots, seqs jump forward)"
        )
        return CheckLine("redis", "eviction", "warn", message, details)
    return CheckLine("redis", "eviction", "ok", f"maxmemory-policy {policy}", details)


# ------------------------------------------------------------------- Kafka
def topic_problems(found: Mapping[str, int], specs: Iterable[TopicSpec]) -> list[str]:
    """Every spec'd topic must exist with exactly its partition count."""
    problems = []
    for spec in specs:
        if spec.name not in found:
            problems.append(f"topic {spec.name} missing (expects {spec.partitions} partitions)")
        elif found[spec.name] != spec.partitions:
            problems.append(
                f"topic {spec.name} has {found[spec.name]} partitions, expects {spec.partitions}"
            )
    return problems


def kafka_topic_partitions(bootstrap: str, prefix: str = "") -> dict[str, int]:
    """Partition count of every topic under ``prefix`` (named without it);
    KafkaException when the broker is down."""
    from confluent_kafka.admin import AdminClient

    from imchat.backends.kafka import partitions_by_topic

    # log_level 0: librdkafka would print each refused connection to stderr;
    # the check reports the outcome itself.
    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})
    return partitions_by_topic(admin.list_topics(timeout=KAFKA_TIMEOUT), prefix)


def check_kafka(
    bootstrap: str, specs: Sequence[TopicSpec] = TOPICS, prefix: str = ""
) -> list[CheckLine]:
    """The broker answers, and every topic of ``specs`` (under ``prefix``) has
    exactly its partition count."""
    from confluent_kafka import KafkaException

    try:
        found = kafka_topic_partitions(bootstrap, prefix)
    except KafkaException as exc:
        reason = exc.args[0].str() if exc.args else str(exc)
        return [CheckLine("kafka", "broker", "fail", f"{bootstrap} unreachable ({reason})")]
    ok = ", ".join(f"{s.name}({s.partitions})" for s in specs)
    details = {"partitions": {s.name: found.get(s.name) for s in specs}}
    line = _line("kafka", "topics", topic_problems(found, specs), f"{ok} present")
    return [
        CheckLine("kafka", "broker", "ok", f"{bootstrap} answered"),
        dataclasses.replace(line, details=details),
    ]
