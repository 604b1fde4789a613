"""The infra check: is every configured backend up and laid out as imchat expects?

The Python port of the seed's ``scripts/test-im-infrastructure.sh``. It reads
the endpoints from ``IMCHAT_*`` (or ``--database-url`` etc.), checks etcd,
MySQL, Redis and Kafka side by side, prints one line per check (✓ pass,
! warning, ✗ failure, - skipped) and ends with a line naming every failing
service. Exit code 0 when nothing failed, 1 otherwise, 2 on bad settings.

Every network call has a timeout of a few seconds and the four services are
checked in parallel, so a down service costs ~3 s, not minutes.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass

from imchat.config import Settings, load_settings
from imchat.ops.checks import CheckLine, check_etcd, check_kafka, check_mysql, check_redis


@dataclass(frozen=True)
class Options:
    require_all: bool = False
    strict_redis: bool = False


# ------------------------------------------------------------------ runner
@dataclass(frozen=True)
class Service:
    name: str
    setting: str  # the Settings field holding the endpoint
    flags: tuple[str, ...]  # command-line overrides of that setting
    run: Callable[[Settings, Options], list[CheckLine]]


SERVICES: tuple[Service, ...] = (
    Service(
        "etcd",
        "etcd_endpoints",
        ("--etcd-endpoints",),
        lambda s, o: check_etcd(s.etcd_endpoint_list),
    ),
    Service("mysql", "database_url", ("--database-url",), lambda s, o: check_mysql(s)),
    Service(
        "redis",
        "redis_url",
        ("--redis-url",),
        lambda s, o: check_redis(s.redis_url, o.strict_redis),
    ),
    Service(
        "kafka",
        "kafka_bootstrap_servers",
        ("--kafka-bootstrap", "--kafka-bootstrap-servers"),
        lambda s, o: check_kafka(s.kafka_bootstrap_servers, prefix=s.kafka_topic_prefix),
    ),
)


def check_service(service: Service, settings: Settings, options: Options) -> list[CheckLine]:
    """Run one service's checks; an unconfigured one is skipped or, if required, failed."""
    if not getattr(settings, service.setting).strip():
        env = f"IMCHAT_{service.setting.upper()}"
        if options.require_all:
            return [CheckLine(service.name, "config", "fail", f"not configured ({env} unset)")]
        return [CheckLine(service.name, "config", "skip", f"skipped (embedded): {env} unset")]
    try:
        return service.run(settings, options)
    except Exception as exc:  # a bug or an odd answer must not hide the other services
        return [CheckLine(service.name, "check", "fail", f"{type(exc).__name__}: {exc}")]


def run_checks(settings: Settings, options: Options) -> list[CheckLine]:
    """Every service's lines, in a fixed order; the services are checked in parallel."""
    with ThreadPoolExecutor(max_workers=len(SERVICES)) as pool:
        futures = [pool.submit(check_service, s, settings, options) for s in SERVICES]
        return [line for future in futures for line in future.result()]


def failures(lines: Iterable[CheckLine]) -> dict[str, list[str]]:
    """service -> the messages of its failed checks."""
    failed: dict[str, list[str]] = {}
    for line in lines:
        if line.status == "fail":
            failed.setdefault(line.service, []).append(line.message)
    return failed


def summary(lines: Sequence[CheckLine]) -> str:
    """The last line: ``FAILED: kafka (...), etcd (...)`` or ``OK: ...``."""
    failed = failures(lines)
    if failed:
        return "FAILED: " + ", ".join(f"{s} ({'; '.join(m)})" for s, m in failed.items())
    warned = sum(line.status == "warn" for line in lines)
    checked = dict.fromkeys(line.service for line in lines if line.status != "skip")
    warnings = f" ({warned} warning{'s' if warned != 1 else ''})" if warned else ""
    return f"OK: {', '.join(checked) or 'nothing configured'}{warnings}"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m imchat check-infra",
        description="Check that etcd, MySQL, Redis and Kafka are up and laid out for imchat.",
    )
    parser.add_argument("--json", action="store_true", help="print a machine-readable result")
    parser.add_argument(
        "--require-all", action="store_true", help="fail when a backend is not configured"
    )
    parser.add_argument(
        "--strict-redis", action="store_true", help="fail unless Redis has AOF and RDB on"
    )
    for service in SERVICES:
        env = f"IMCHAT_{service.setting.upper()}"
        parser.add_argument(*service.flags, dest=service.setting, help=f"overrides {env}")
    return parser


def _settings(args: argparse.Namespace, environ: Mapping[str, str] | None) -> Settings:
    overrides = {s.setting: getattr(args, s.setting) for s in SERVICES}
    return load_settings(environ, {k: v for k, v in overrides.items() if v is not None})


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    """Run the checks, print the result; 0 when nothing failed, 1 otherwise, 2 on bad settings."""
    args = _parser().parse_args(argv)
    try:
        settings = _settings(args, environ)
    except ValueError as exc:
        print(f"bad settings: {exc}", file=sys.stderr)
        return 2
    options = Options(require_all=args.require_all, strict_redis=args.strict_redis)
    lines = run_checks(settings, options)
    if args.json:
        _print_json(lines)
    else:
        print("\n".join([line.render() for line in lines] + [summary(lines)]), flush=True)
    return 1 if failures(lines) else 0


def _print_json(lines: Sequence[CheckLine]) -> None:
    result = {
        "ok": not failures(lines),
        "checks": [asdict(line) for line in lines],
        "failed": failures(lines),
        "summary": summary(lines),
    }
    print(json.dumps(result, indent=2, ensure_ascii=False), flush=True)
