"""Prometheus metrics, correct under several processes.

With ``IMCHAT_METRICS_DIR`` set (production: every process of a host shares
it), prometheus-client's multiprocess mode keeps each process's values in
files there and ``/metrics`` adds them up; the variable must be known before
prometheus_client is first imported, hence the environment is read here,
at import. Without it (the embedded default) metrics live in the process.
"""

from __future__ import annotations

import os

if os.environ.get("IMCHAT_METRICS_DIR"):
    os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", os.environ["IMCHAT_METRICS_DIR"])
    os.makedirs(os.environ["PROMETHEUS_MULTIPROC_DIR"], exist_ok=True)

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

CONNECTIONS = Gauge("imchat_connections", "Open WebSocket connections", multiprocess_mode="livesum")
MESSAGES_ACCEPTED = Counter(
    "imchat_messages_accepted_total", "Messages a gateway put on the bus", ["kind"]
)
MESSAGES_DELIVERED = Counter(
    "imchat_messages_delivered_total", "msg frames written to recipients' sockets", ["via"]
)
HISTORY_STORED = Counter("imchat_history_stored_total", "Messages written to history (once each)")
PENDING_CONFIRMED = Counter(
    "imchat_pending_confirmed_total", "Delivery marks applied (delivered frames, batched)"
)
ACK_LATENCY = Histogram(
    "imchat_ack_latency_seconds",
    "From a send frame's publish to its ack on the sender's socket",
    buckets=LATENCY_BUCKETS,
)
DELIVERY_LATENCY = Histogram(
    "imchat_delivery_latency_seconds",
    "From a message's ts to its push on a recipient's socket",
    buckets=LATENCY_BUCKETS,
)
ERRORS = Counter("imchat_errors_total", "Errors answered, by code", ["code", "where"])
CONSUMER_LAG = Gauge(
    "imchat_bus_consumer_lag", "Bus records not yet processed", multiprocess_mode="max"
)
BATCH_SECONDS = Histogram(
    "imchat_bus_batch_seconds", "Time to process one consumer batch", buckets=LATENCY_BUCKETS
)
TASK_SECONDS = Histogram(
    "imchat_task_seconds", "Background job durations", ["task"], buckets=LATENCY_BUCKETS
)
PRESENCE_CHANGES = Counter(
    "imchat_presence_changes_total", "Presence changes announced, by status", ["status"]
)
PUSH_SENT = Counter(
    "imchat_push_sent_total", "Web Push requests, by result (sent, gone, failed)", ["result"]
)
PUSH_DROPPED = Counter(
    "imchat_push_dropped_total", "Unrouted recipients not queued for Web Push (queue full)"
)
ROUTE_LOOKUPS = Counter("imchat_route_lookups_total", "Router lookups (local etcd copy)")


def exposition() -> tuple[bytes, str]:
    """The text exposition of this process, or of every process of the host."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(), CONTENT_TYPE_LATEST


def mark_process_dead(pid: int) -> None:
    """For gunicorn's child_exit: drop a dead worker's live gauges."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.mark_process_dead(pid)
