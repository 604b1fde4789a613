"""Operator commands: migrations, Kafka topics, the infra check, the bus consumer, stats."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Callable, Sequence

from imchat.config import Settings, load_settings


def cmd_db(args: argparse.Namespace, settings: Settings) -> int:
    from imchat.ops import migrate

    if args.action == "upgrade":
        migrate.upgrade(settings, args.revision or "head", sample_data=args.sample_data)
    elif args.action == "downgrade":
        migrate.downgrade(settings, args.revision or "-1")
    elif args.action == "status":
        print(json.dumps(migrate.status(settings), indent=2))
    elif args.action == "check":
        diffs = migrate.check(settings)
        for diff in diffs:
            print(f"differs: {diff}")
        print("models and migrations agree" if not diffs else f"{len(diffs)} difference(s)")
        return 1 if diffs else 0
    elif args.action == "history":
        print("\n".join(migrate.history()))
    return 0


def cmd_create_topics(args: argparse.Namespace, settings: Settings) -> int:
    from imchat.container import Services
    from imchat.wire.topics import TOPICS

    services = Services(settings)
    created = services.bus.ensure_topics(
        TOPICS, settings.kafka_replication_factor, settings.kafka_min_insync_replicas
    )
    for spec in TOPICS:
        state = "created" if spec.name in created else "exists"
        print(f"{spec.name}: {spec.partitions} partitions, {state}")
    services.close()
    return 0


def cmd_consume(args: argparse.Namespace, settings: Settings) -> int:
    from imchat import logs
    from imchat.container import Services
    from imchat.services.delivery.consumer import DeliveryConsumer

    logs.configure(settings)
    services = Services(settings)
    consumer = DeliveryConsumer(services)
    with contextlib.suppress(KeyboardInterrupt):
        consumer.run()
    services.stop_serving()  # hands the queued Web Push notifications over
    return 0


def cmd_stats(args: argparse.Namespace, settings: Settings) -> int:
    """Print the daily statistics of the last ``--days`` UTC days as a table."""
    from imchat.container import Services
    from imchat.services import maintenance

    services = Services(settings)
    try:
        if args.refresh:
            maintenance.refresh_day(services, maintenance.parse_day("today"))
        rows = maintenance.daily_report(services, args.days)
    finally:
        services.close()
    columns = ["day", "messages", "direct_messages", "group_messages", "active_users"]
    widths = [max(len(c), *(len(str(r[c])) for r in rows)) for c in columns]
    print("  ".join(c.rjust(w) for c, w in zip(columns, widths, strict=True)))
    for row in rows:
        print("  ".join(str(row[c]).rjust(w) for c, w in zip(columns, widths, strict=True)))
    return 0


def cmd_vapid_keys(args: argparse.Namespace, settings: Settings) -> int:
    """Print a new VAPID key pair for Web Push, as the two settings."""
    from imchat.services.push import keys

    private = keys.generate_private_key()
    print(f"IMCHAT_VAPID_PRIVATE_KEY={private}")
    print(f"IMCHAT_VAPID_PUBLIC_KEY={keys.public_key_of(keys.private_key_of(private))}")
    return 0


def _positive(raw: str) -> int:
    value = int(raw)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m imchat")
    sub = parser.add_subparsers(dest="command", required=True)
    db = sub.add_parser("db", help="database migrations (Alembic)")
    db.add_argument("action", choices=["upgrade", "downgrade", "status", "check", "history"])
    db.add_argument("revision", nargs="?", help="target revision (default: head / -1)")
    db.add_argument(
        "--sample-data", action="store_true", help="also load alice, bob, charlie and their group"
    )
    db.set_defaults(func=cmd_db)
    topics = sub.add_parser("create-topics", help="create the Kafka topics (idempotent)")
    topics.set_defaults(func=cmd_create_topics)
    consume = sub.add_parser("consume", help="run the bus consumer (delivery)")
    consume.set_defaults(func=cmd_consume)
    stats = sub.add_parser("stats", help="daily messages and active users (UTC days)")
    stats.add_argument("--days", type=_positive, default=7, help="how many days (default 7)")
    stats.add_argument("--refresh", action="store_true", help="recount today's active users first")
    stats.set_defaults(func=cmd_stats)
    vapid = sub.add_parser("vapid-keys", help="print a new VAPID key pair (Web Push)")
    vapid.set_defaults(func=cmd_vapid_keys)
    # Parsed by imchat.ops.infra_check itself (see main).
    sub.add_parser("check-infra", help="check etcd, MySQL, Redis and Kafka", add_help=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["check-infra"]:
        # Its own parser: argparse.REMAINDER would not pass options through.
        from imchat.ops import infra_check

        return infra_check.main(argv[1:])
    args = build_parser().parse_args(argv)
    func: Callable[[argparse.Namespace, Settings], int] = args.func
    return func(args, load_settings())


if __name__ == "__main__":
    sys.exit(main())
