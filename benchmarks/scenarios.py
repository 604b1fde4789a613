"""The scenarios, each run the same way on the echo ceiling and on imchat:

- ``direct``: many pairs, closed-loop maximum throughput, then the
  end-to-end latency (sender's send to recipient's receipt) at fixed rates;
- ``idle``: memory per idle connection (gateway workers' RSS before/after);
- ``fanout``: a group with every member online, deliveries/s and latency
  (the ceiling: an in-process broadcast to as many sockets);
- ``pending``: a reconnect with N pending messages, time until ``synced``
  (the ceiling: the echo app pushing N frames on connect);
- ``conversations``, ``history``, ``biggroup``: issue 12's conversation list,
  history pages and 10,000-member group (``benchmarks/history.py``).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks import history
from benchmarks.servers import Loadgen, Server, run_job

Result = dict[str, Any]
CORE = ("direct", "idle", "fanout", "pending")
SCENARIOS = (*CORE, "conversations", "history", "biggroup")


@dataclass(frozen=True)
class Params:
    """Counts and durations of one run; every loop is bounded by them."""

    pairs: int = 100
    window: int = 4  # sends in flight per sender in the closed loop
    warmup: float = 1.0
    duration: float = 5.0
    rates: tuple[int, ...] = (1000, 2500)
    idle: int = 10_000
    group: int = 1000
    fanout_window: int = 4
    pending: int = 10_000
    conversations: int = 1000  # of the user whose list is read
    conversation_messages: int = 10  # in each of them
    history: int = 1_000_000  # messages of the conversation paged
    requests: int = 500  # GETs measured per figure
    big_group: int = 10_000
    big_online: int = 1000  # of its members (from ``group``'s users, the sender among them)


FULL = Params()
QUICK = Params(
    pairs=4, window=2, warmup=0.2, duration=0.5, rates=(100,), idle=40, group=10,
    fanout_window=2, pending=100, conversations=60, history=2000, requests=20,
    big_group=50, big_online=10,
)  # fmt: skip


class Population:
    """The users of one server, registered once: each scenario gets its own,
    so no scenario finds another's pending messages."""

    def __init__(self, server: Server, params: Params) -> None:
        self.server = server
        self.is_echo = server.kind == "echo"
        count = 0 if self.is_echo else params.group + 2 * params.pairs + 2 + 3
        started = time.perf_counter()
        users = server.register(count) if count else []
        self.register_seconds = time.perf_counter() - started
        self.group = users[: params.group]
        self.pairs = users[params.group : params.group + 2 * params.pairs]
        self.pending = users[params.group + 2 * params.pairs :][:2]
        # The conversation list's user, and the two users of the long history.
        self.extra = users[params.group + 2 * params.pairs + 2 :]


def direct(pop: Population, params: Params) -> Result:
    """Closed-loop throughput of direct messages, then latency at fixed rates."""
    server, n = pop.server, params.pairs
    if pop.is_echo:  # n senders echoing, n idle sockets: the same socket count
        senders, receivers = [server.ws_url()] * n, [server.ws_url()] * n
        targets: list[dict[str, str]] = [{}] * n
    else:
        senders = [server.ws_url(u) for u in pop.pairs[:n]]
        receivers = [server.ws_url(u) for u in pop.pairs[n:]]
        targets = [{"to": u.user_id} for u in pop.pairs[n:]]
    common = {"senders": senders, "receivers": receivers, "targets": targets}
    result = run_job(
        {"kind": "throughput", "window": params.window, "warmup": params.warmup,
         "duration": params.duration, **common}
    )  # fmt: skip
    result["fixed_rates"] = [
        run_job({"kind": "fixed_rate", "rate": rate, "duration": params.duration, **common})
        for rate in params.rates
    ]
    return result


def idle(pop: Population, params: Params) -> Result:
    """RSS of the gateway workers before and after ``params.idle`` sockets."""
    server = pop.server
    if pop.is_echo:
        urls = [server.ws_url()] * params.idle
    else:  # several connections per user, as several devices would have
        urls = [server.ws_url(pop.group[i % len(pop.group)]) for i in range(params.idle)]
    time.sleep(0.5)
    before = server.worker_rss()
    loadgen = Loadgen({"kind": "idle", "urls": urls})
    ready = loadgen.read()
    time.sleep(1.0)  # let the last handshakes' garbage settle
    after = server.worker_rss()
    loadgen.tell("close")
    result = loadgen.finish()
    time.sleep(2.0)  # the server closes 10,000 sockets: let it before the next scenario
    grown = sum(after.values()) - sum(before.values())
    return {
        **result,
        "requested": params.idle,
        "workers": len(after),
        "rss_before_mb": sum(before.values()) / 2**20,
        "rss_after_mb": sum(after.values()) / 2**20,
        "kb_per_connection": grown / 1024 / max(1, ready["ready"]),
    }


def fanout(pop: Population, params: Params) -> Result:
    """A group of ``params.group`` members, all online, one sender in a closed loop."""
    server, members = pop.server, params.group - 1
    if pop.is_echo:
        job = {"senders": [server.ws_url()], "receivers": [server.ws_url()] * members,
               "targets": [{}], "broadcast": True}  # fmt: skip
    else:
        owner, others = pop.group[0], pop.group[1 : params.group]
        group_id = server.create_group(owner, others)
        job = {"senders": [server.ws_url(owner)], "targets": [{"group": group_id}],
               "receivers": [server.ws_url(u) for u in others]}  # fmt: skip
    result = run_job(
        {"kind": "throughput", "window": params.fanout_window, "warmup": params.warmup,
         "duration": params.duration, "fan": members, **job}
    )  # fmt: skip
    return {**result, "members": params.group}


def pending(pop: Population, params: Params) -> Result:
    """N messages sent to an offline user, then its connect: time until ``synced``."""
    server = pop.server
    if pop.is_echo:
        sync = run_job({"kind": "sync", "url": server.ws_url(query=f"&push={params.pending}")})
        return {**sync, "pending": params.pending}
    sender, recipient = pop.pending
    target = {"to": recipient.user_id}
    burst = run_job(
        {"kind": "burst", "sender": server.ws_url(sender), "target": target,
         "count": params.pending, "window": 100}
    )  # fmt: skip
    sync = run_job({"kind": "sync", "url": server.ws_url(recipient)})
    return {**sync, "pending": params.pending, "send_seconds": burst["seconds"],
            "acked": burst["acked"]}  # fmt: skip


RUNNERS = {
    "direct": direct,
    "idle": idle,
    "fanout": fanout,
    "pending": pending,
    "conversations": history.conversations,
    "history": history.history,
    "biggroup": history.biggroup,
}


def run_all(server: Server, params: Params, names: list[str]) -> Result:
    """Every named scenario on one server; idle first, before any message exists."""
    pop = Population(server, params)
    users = len(pop.group) + len(pop.pairs) + len(pop.pending) + len(pop.extra)
    results: Result = {"register_seconds": pop.register_seconds, "users": users}
    for name in names:
        # Other work shares this machine: each figure says how loaded it was.
        load = [round(x, 2) for x in os.getloadavg()]
        started = time.perf_counter()
        try:
            results[name] = RUNNERS[name](pop, params)
        except Exception as exc:  # one broken scenario must not lose the others' figures
            results[name] = {"error": repr(exc)[:500]}
        results[name]["wall_seconds"] = time.perf_counter() - started
        results[name]["load_average_before"] = load
        took = results[name]["wall_seconds"]
        print(f"  {server.kind} {name}: done in {took:.1f} s (load {load})", file=sys.stderr)
    return results


def profile(server: Server, params: Params, seconds: float = 8.0) -> Result:
    """py-spy on every Python process of the set while direct messages flow at
    full speed: each process's top functions by own samples and by total."""
    spy = Path(sys.executable).parent / "py-spy"
    pop = Population(server, Params(**{**params.__dict__, "group": 0, "pending": 0}))
    with tempfile.TemporaryDirectory(prefix="bench-pyspy-") as tmp:
        records = {}
        for name, pid in server.pids().items():
            if name == "redis":
                continue
            out = Path(tmp) / f"{name}.txt"
            argv = [str(spy), "record", "--pid", str(pid), "--duration", str(int(seconds))]
            argv += ["--rate", "200", "--format", "raw", "--nonblocking", "-o", str(out)]
            spying = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            records[name] = (spying, out)
        load = direct(pop, Params(**{**params.__dict__, "duration": seconds, "rates": ()}))
        found: Result = {"load_rate_per_s": load["rate_per_s"]}
        for name, (popen, out) in records.items():
            popen.wait(60)
            found[name] = top_entries(out.read_text() if out.exists() else "")
    return found


def top_entries(collapsed: str, limit: int = 12) -> Result:
    """From py-spy's collapsed stacks: the functions most often on top of the
    stack (own time) and anywhere on it (total), as shares of all samples."""
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    samples = 0
    for line in collapsed.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = stack.split(";")
        samples += int(count)
        own[frames[-1]] += int(count)
        for frame in set(frames):
            total[frame] += int(count)

    def share(counter: Counter[str]) -> list[list[Any]]:
        return [[f, round(100 * c / samples, 1)] for f, c in counter.most_common(limit)]

    return (
        {"samples": samples, "own": share(own), "total": share(total)}
        if samples
        else {"samples": 0}
    )
