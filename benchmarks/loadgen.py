"""The load generator: picows + uvloop in a process of its own, one event loop
holding every WebSocket. The fastest client found on this machine (50k msg/s
on half a core), so the server, not the client, is what gets measured.

Run as ``python -m benchmarks.loadgen``: the first line on stdin is a JSON
job, the result is one JSON line on stdout. The ``idle`` job also prints a
``{"ready": ...}`` line once every socket is open and holds them until the
next line on stdin. Every job is bounded in count and time.

Frames: the same JSON ``send`` frames go to imchat and to the echo ceiling;
each body carries the sender's ``perf_counter_ns`` so that a receipt gives
the end-to-end latency (sender's send to recipient's receipt, one clock).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import resource
import sys
import time
from collections.abc import Callable
from typing import Any

import uvloop
from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

Job = dict[str, Any]
CONNECT_CONCURRENCY = 200  # handshakes in flight: above the server's backlog they would time out
DRAIN_SECONDS = 10.0  # after a run, how long in-flight messages may take to arrive


class Recorder:
    """Counts deliveries and keeps latencies while ``recording``."""

    def __init__(self) -> None:
        self.delivered = 0
        self.measured = 0
        self.errors: list[str] = []
        self.latencies_ns: list[int] = []
        self.recording = False

    def delivery(self, sent_ns: int) -> None:
        self.delivered += 1
        if self.recording:
            self.measured += 1
            self.latencies_ns.append(time.perf_counter_ns() - sent_ns)


class Client(WSListener):
    """One chat connection: sorts frames into acks, deliveries and ``synced``."""

    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder
        self.transport: WSTransport | None = None
        self.synced: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.pushed = 0  # msg frames before synced: the pending ones
        self.on_ack: Callable[[], None] = lambda: None
        self.acked = 0
        self.seqs: dict[str, int] = {}  # the highest seq seen per conversation

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type != WSMsgType.TEXT:
            return
        raw = frame.get_payload_as_bytes()
        if raw[:1] == b"B":  # a broadcast of the echo ceiling
            self.recorder.delivery(json.loads(raw[1:])["body_ns"])
        elif raw == b"D":  # the echo ceiling's ack of a broadcast
            self._ack()
        else:
            self._on_json(json.loads(raw))

    def _on_json(self, frame: dict[str, Any]) -> None:
        kind = frame.get("type")
        if kind == "msg":
            conversation, seq = frame.get("conversation_id", ""), int(frame.get("seq", 0))
            self.seqs[conversation] = max(seq, self.seqs.get(conversation, 0))
            if not self.synced.done():
                # Pending messages left by an earlier job: not part of this measurement.
                self.pushed += 1
                return
            body = frame.get("body", "")
            if body.startswith("t"):
                self.recorder.delivery(int(body[1:]))
        elif kind == "send":  # the echo ceiling: the echo is both ack and delivery
            self.recorder.delivery(int(frame["body"][1:]))
            self._ack()
        elif kind == "ack":
            self._ack()
        elif kind == "synced":
            if not self.synced.done():
                self.synced.set_result(int(frame["count"]))
        elif kind == "error":
            self.recorder.errors.append(frame.get("code", "?"))
            self._ack()  # an answered send frees its window slot all the same

    def _ack(self) -> None:
        self.acked += 1
        self.on_ack()

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        if not self.synced.done():
            self.synced.set_exception(ConnectionError("closed before synced"))

    def send_text(self, text: str) -> None:
        assert self.transport is not None
        self.transport.send(WSMsgType.TEXT, text.encode())


_cids = itertools.count()
# Client ids are unique per sender for 7 days (idempotent send): a prefix per
# process keeps one job's ids from replaying an earlier job's messages.
_CID_PREFIX = os.urandom(6).hex()


def send_frame(target: dict[str, str], broadcast: bool = False) -> str:
    """A ``send`` frame to a user or group, its body stamped with the send time."""
    now = time.perf_counter_ns()
    if broadcast:
        return "B" + json.dumps({"body_ns": now})
    frame = {"type": "send", "id": f"{_CID_PREFIX}{next(_cids)}", "body": f"t{now}", **target}
    return json.dumps(frame)


async def connect(urls: list[str], recorder: Recorder, timeout: float = 60.0) -> list[Client]:
    """Open every URL (at most CONNECT_CONCURRENCY handshakes at once) and wait
    for each one's ``synced``."""
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)

    async def one(url: str) -> Client | None:
        async with gate:
            try:
                _, client = await ws_connect(lambda: Client(recorder), url)
                assert isinstance(client, Client)
                await asyncio.wait_for(client.synced, timeout)
                return client
            except (TimeoutError, OSError, ConnectionError) as exc:
                # Counted, not fatal: a refused or dropped socket is a result too.
                recorder.errors.append(f"connect: {exc!r}"[:200])
                return None

    found = await asyncio.gather(*(one(url) for url in urls))
    return [client for client in found if client is not None]


def close_all(clients: list[Client]) -> None:
    """Confirm what arrived (so the next job's connects find no pending
    messages, as a real client would), then close."""
    for client in clients:
        if client.transport is None:
            continue
        for conversation, seq in client.seqs.items():
            frame = {"type": "delivered", "conversation_id": conversation, "seq": seq}
            client.send_text(json.dumps(frame))
        client.transport.disconnect()


def percentiles(latencies_ns: list[int]) -> dict[str, float]:
    """p50 / p99 / p99.9 / max in milliseconds (empty when nothing was measured)."""
    if not latencies_ns:
        return {}
    ordered = sorted(latencies_ns)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] / 1e6

    return {
        "p50_ms": at(0.50),
        "p99_ms": at(0.99),
        "p999_ms": at(0.999),
        "max_ms": ordered[-1] / 1e6,
    }


async def drain(recorder: Recorder, expected: int) -> None:
    """Wait, bounded, for every message sent to have arrived."""
    deadline = time.monotonic() + DRAIN_SECONDS
    while recorder.delivered < expected and time.monotonic() < deadline:
        await asyncio.sleep(0.02)


async def measure(recorder: Recorder, warmup: float, duration: float) -> float:
    """Let the load settle, then count deliveries for ``duration`` seconds."""
    await asyncio.sleep(warmup)
    start, recorder.recording = time.perf_counter(), True
    await asyncio.sleep(duration)
    recorder.recording = False
    return time.perf_counter() - start


async def throughput(job: Job) -> Job:
    """Closed loop: each sender keeps ``window`` sends unanswered, as fast as acks come."""
    recorder = Recorder()
    senders = await connect(job["senders"], recorder)
    receivers = await connect(job.get("receivers", []), recorder)
    if len(senders) != len(job["senders"]):
        raise ConnectionError(f"senders could not connect: {recorder.errors[:3]}")
    targets = job["targets"]  # one {"to": id} / {"group": id} per sender ({} for the echo)
    broadcast = bool(job.get("broadcast"))
    fan = int(job.get("fan", 1))  # deliveries per message
    running, sent = True, [0]

    def refill(client: Client, target: dict[str, str]) -> Callable[[], None]:
        def on_ack() -> None:
            if running:
                sent[0] += 1
                client.send_text(send_frame(target, broadcast))

        return on_ack

    for client, target in zip(senders, targets, strict=True):
        client.on_ack = refill(client, target)
        for _ in range(job["window"]):
            sent[0] += 1
            client.send_text(send_frame(target, broadcast))
    elapsed = await measure(recorder, job["warmup"], job["duration"])
    running = False
    await drain(recorder, sent[0] * fan)
    close_all(senders + receivers)
    return {
        "connections": len(senders) + len(receivers),
        "sent": sent[0],
        "acked": sum(c.acked for c in senders),
        "expected_deliveries": sent[0] * fan,
        "delivered": recorder.delivered,
        "rate_per_s": recorder.measured / elapsed,
        "errors": len(recorder.errors),
        **percentiles(recorder.latencies_ns),
    }


async def fixed_rate(job: Job) -> Job:
    """Open loop at ``rate`` msg/s, spread over the senders: the latency at that load."""
    recorder = Recorder()
    senders = await connect(job["senders"], recorder)
    receivers = await connect(job.get("receivers", []), recorder)
    pairs = list(zip(senders, job["targets"], strict=True))
    rate, duration, sent = job["rate"], job["duration"], 0
    recorder.recording = True
    start = time.perf_counter()
    while (elapsed := time.perf_counter() - start) < duration:
        for _ in range(int(elapsed * rate) - sent):
            client, target = pairs[sent % len(pairs)]
            client.send_text(send_frame(target))
            sent += 1
        await asyncio.sleep(0.001)
    await drain(recorder, sent)
    recorder.recording = False
    close_all(senders + receivers)
    return {
        "rate_per_s": rate,
        "achieved_per_s": sent / duration,
        "sent": sent,
        "delivered": recorder.delivered,
        "errors": len(recorder.errors),
        **percentiles(recorder.latencies_ns),
    }


async def burst(job: Job) -> Job:
    """One sender sends ``count`` messages (``window`` in flight) and waits for every ack."""
    recorder = Recorder()
    (sender,) = await connect([job["sender"]], recorder)
    done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    sent = [0]

    def on_ack() -> None:
        if sent[0] < job["count"]:
            sent[0] += 1
            sender.send_text(send_frame(job["target"]))
        elif sender.acked >= job["count"] and not done.done():
            done.set_result(None)

    sender.on_ack = on_ack
    start = time.perf_counter()
    for _ in range(min(job["window"], job["count"])):
        sent[0] += 1
        sender.send_text(send_frame(job["target"]))
    await asyncio.wait_for(done, job.get("timeout", 120))
    seconds = time.perf_counter() - start
    close_all([sender])
    return {
        "sent": sent[0],
        "acked": sender.acked,
        "errors": len(recorder.errors),
        "seconds": seconds,
    }


async def sync(job: Job) -> Job:
    """Connect once: the time from the TCP connect to ``synced``, and what was pushed."""
    recorder = Recorder()
    start = time.perf_counter()
    (client,) = await connect([job["url"]], recorder, timeout=job.get("timeout", 60))
    seconds = time.perf_counter() - start
    close_all([client])
    return {"synced_count": client.synced.result(), "pushed": client.pushed, "seconds": seconds}


async def idle(job: Job) -> Job:
    """Open every socket, report ready, hold them until told to close."""
    recorder = Recorder()
    start = time.perf_counter()
    clients = await connect(job["urls"], recorder, timeout=120)
    seconds = time.perf_counter() - start
    ready = {"ready": len(clients), "connect_seconds": seconds, "failed": len(recorder.errors)}
    print(json.dumps(ready), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    open_count = sum(1 for c in clients if c.transport is not None)
    close_all(clients)
    return {
        "connections": open_count,
        "connect_seconds": seconds,
        "failed": len(job["urls"]) - len(clients),
        "first_errors": recorder.errors[:3],
    }


JOBS = {
    "throughput": throughput,
    "fixed_rate": fixed_rate,
    "burst": burst,
    "sync": sync,
    "idle": idle,
}


def raise_fd_limit() -> None:
    """10,000+ sockets need more descriptors than the default soft limit."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def main() -> None:
    raise_fd_limit()
    job = json.loads(sys.stdin.readline())
    result = uvloop.run(asyncio.wait_for(JOBS[job["kind"]](job), job.get("deadline", 240)))
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
