"""Faults of the broker and of etcd under a live message stream (issue 8).

The stack here has its own tansu broker (storage on S3 served by moto, so a
restart keeps topics, records and committed offsets) and its own three-member
etcd cluster: these tests kill them. Every stream test checks the contract's
guarantees from the client's side: each send is finally acked exactly once
(retried with the same id after `unavailable`, resent by ``reconnect`` after
a timeout), every acked message reaches its recipient, and each conversation's
seqs run 1, 2, 3... without a gap or a repeat.
"""

from __future__ import annotations

import itertools
import json
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import pytest
from websocket import WebSocketException

from imchat.client import ChatConnection, ChatError, Session
from tests.support.waiting import wait_for

from .conftest import BROKER, FaultyStack

pytestmark = [pytest.mark.integration, pytest.mark.e2e, pytest.mark.faults]

Frame = dict[str, Any]

SENDERS = 3
# 198 messages: 44 from each sender in direct conversations (9 of them), and
# 66 in the group of all six users, 22 from each sender.
PER_SENDER = 66
GROUP = "group:"  # Tally.recipient_of for a group message: GROUP + group id
FAULT_AFTER = 60  # acks before the fault strikes: the stream is well under way
STREAM_SECONDS = 45.0  # a send not acked by then fails the test
# KafkaBus: librdkafka gives up on a record after 5 s, the gateway waits 1 s more.
UNAVAILABLE_WITHIN = 7.5


# ------------------------------------------------------------------ senders
@dataclass
class Tally:
    """What the senders saw: one ack per client id, and the failures on the way."""

    acks: dict[str, Frame] = field(default_factory=dict)
    recipient_of: dict[str, str] = field(default_factory=dict)
    ack_times: list[float] = field(default_factory=list)
    unavailable: int = 0
    timeouts: int = 0
    pending_cleared_seconds: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def acked(self, cid: str, to: str, ack: Frame) -> None:
        with self.lock:
            assert cid not in self.acks, f"{cid} acked twice"
            self.acks[cid] = ack
            self.recipient_of[cid] = to
            self.ack_times.append(time.monotonic())

    def failed(self, timeout: bool) -> None:
        with self.lock:
            if timeout:
                self.timeouts += 1
            else:
                self.unavailable += 1

    def longest_stall(self) -> float:
        """The longest wait between two acks: how long the fault stopped the stream."""
        times = sorted(self.ack_times)
        return max((b - a for a, b in itertools.pairwise(times)), default=0.0)


def send_reliably(
    conn: ChatConnection,
    cid: str,
    tally: Tally,
    deadline: float,
    to: str | None = None,
    group: str | None = None,
) -> Frame:
    """What the contract tells a client to do: retry `unavailable` with the same
    id; on a lost ack, reconnect (which resends every unacked send) and wait again."""
    while True:
        assert time.monotonic() < deadline, f"{cid} was never acked"
        try:
            # The body is the id: it ties each msg to its send.
            return conn.send(cid, to=to, group=group, cid=cid)
        except ChatError as err:
            assert err.code == "unavailable", err
            tally.failed(timeout=False)
            time.sleep(0.2)
        except TimeoutError:
            tally.failed(timeout=True)
            reconnect(conn, deadline)


def reconnect(conn: ChatConnection, deadline: float) -> None:
    """Reconnect as a client does, again and again while its gateway is down."""
    while True:
        try:
            conn.reconnect()
            conn.wait_synced()
            return
        except (OSError, WebSocketException, TimeoutError):
            assert time.monotonic() < deadline, "could not reconnect"
            time.sleep(0.5)


def send_stream(
    conn: ChatConnection,
    index: int,
    recipients: list[Session],
    group_id: str,
    tally: Tally,
    deadline: float,
) -> None:
    """Two direct messages, then one to the group of everyone, and so on."""
    for n in range(PER_SENDER):
        cid = f"s{index}-{n}"
        if n % 3 == 2:
            ack = send_reliably(conn, cid, tally, deadline, group=group_id)
            tally.acked(cid, GROUP + group_id, ack)
        else:
            to = recipients[n % len(recipients)].user_id
            tally.acked(cid, to, send_reliably(conn, cid, tally, deadline, to=to))


# --------------------------------------------------------------- recipients
@dataclass
class Inbox:
    """A recipient's connections over time and the messages each one got."""

    stack: FaultyStack
    session: Session
    conn: ChatConnection
    received: list[list[Frame]] = field(default_factory=lambda: [[]])

    def drain(self) -> None:
        while not self.conn.messages.empty():
            self.received[-1].append(self.conn.messages.get_nowait())

    def move(self, gateway: int) -> None:
        """Close this connection and open one on ``gateway``: pending messages follow."""
        self.drain()
        self.conn.close()
        self.conn = connect(self.stack, gateway, self.session.token)
        self.received.append([])

    def confirm_all(self) -> None:
        """``delivered`` up to the highest seq received in each conversation."""
        highest: dict[str, int] = {}
        for frames in self.received:
            for msg in frames:
                cid = str(msg["conversation_id"])
                highest[cid] = max(highest.get(cid, 0), int(msg["seq"]))
        for conversation_id, seq in highest.items():
            self.conn.confirm(conversation_id, seq)

    def msg_ids(self) -> set[str]:
        return {m["msg_id"] for frames in self.received for m in frames}

    def collect(self, expected: set[str], timeout: float) -> None:
        """Keep receiving on the current connection until every expected message came."""
        deadline = time.monotonic() + timeout
        while not expected <= self.msg_ids():
            left = deadline - time.monotonic()
            missing = len(expected - self.msg_ids())
            assert left > 0, f"{missing} acked message(s) never reached {self.session.user_id}"
            try:
                self.received[-1].append(self.conn.receive(timeout=min(left, 1.0)))
            except Exception:  # queue.Empty: look again until the deadline
                continue
        time.sleep(0.3)  # a duplicate would come right behind
        self.drain()


def connect(stack: FaultyStack, gateway: int, token: str) -> ChatConnection:
    conn = stack.api(gateway).connect(token)
    conn.wait_synced()
    return conn


# ------------------------------------------------------------------ the run
@dataclass
class StreamResult:
    tally: Tally
    inboxes: list[Inbox]
    fault_seconds: float

    def figures(self) -> dict[str, object]:
        frames = sum(len(f) for inbox in self.inboxes for f in inbox.received)
        return {
            "acked": len(self.tally.acks),
            "delivered_unique": sum(len(inbox.msg_ids()) for inbox in self.inboxes),
            "msg_frames_incl_redelivery": frames,
            "unavailable_errors": self.tally.unavailable,
            "ack_timeouts_reconnects": self.tally.timeouts,
            "fault_seconds": round(self.fault_seconds, 2),
            "longest_stall_seconds": round(self.tally.longest_stall(), 2),
            "group_messages": sum(1 for to in self.tally.recipient_of.values() if GROUP in to),
            "pending_cleared_seconds": round(self.tally.pending_cleared_seconds, 2),
        }


def run_stream(stack: FaultyStack, fault: Callable[[list[Inbox]], None]) -> StreamResult:
    """3 senders stream to 3 recipients (and to a group of all six) over both
    gateways; ``fault`` strikes mid-stream. The recipients then confirm all
    they got, and nothing may be left pending."""
    sessions = [stack.user() for _ in range(SENDERS)]
    recipients = [stack.user() for _ in range(SENDERS)]
    group_id = str(
        stack.api().create_group(
            sessions[0].token, "faults", [u.user_id for u in [*sessions[1:], *recipients]]
        )["group_id"]
    )
    senders = [connect(stack, i % 2, s.token) for i, s in enumerate(sessions)]
    inboxes = [
        Inbox(stack, r, connect(stack, (i + 1) % 2, r.token)) for i, r in enumerate(recipients)
    ]
    tally = Tally()
    deadline = time.monotonic() + STREAM_SECONDS
    try:
        with ThreadPoolExecutor(SENDERS) as pool:
            streams = [
                pool.submit(send_stream, conn, i, recipients, group_id, tally, deadline)
                for i, conn in enumerate(senders)
            ]
            while len(tally.acks) < FAULT_AFTER and not any(s.done() for s in streams):
                time.sleep(0.01)
            started = time.monotonic()
            fault(inboxes)
            fault_seconds = time.monotonic() - started
            for stream in streams:
                stream.result()
        expected = expected_by_recipient(tally, [r.user_id for r in recipients])
        for inbox in inboxes:
            inbox.collect(expected[inbox.session.user_id], timeout=30)
            inbox.confirm_all()
    finally:
        for conn in [*senders, *(inbox.conn for inbox in inboxes)]:
            conn.close()
    confirmed = time.monotonic()
    for inbox in inboxes:
        wait_nothing_pending(stack, inbox.session, confirmed + 30)
    tally.pending_cleared_seconds = time.monotonic() - confirmed
    return StreamResult(tally, inboxes, fault_seconds)


def expected_by_recipient(tally: Tally, recipients: list[str]) -> dict[str, set[str]]:
    """The msg_ids each recipient must get: its direct messages and every group one."""
    expected: dict[str, set[str]] = defaultdict(set)
    for cid, ack in tally.acks.items():
        to = tally.recipient_of[cid]
        for user_id in recipients if to.startswith(GROUP) else [to]:
            expected[user_id].add(ack["msg_id"])
    return expected


def wait_nothing_pending(stack: FaultyStack, user: Session, deadline: float) -> None:
    """Confirmed means trimmed: a new connection is pushed nothing (``synced`` 0)."""
    while True:
        conn = stack.api(0).connect(user.token)
        try:
            if conn.wait_synced() == 0:
                return
        finally:
            conn.close()
        assert time.monotonic() < deadline, f"confirmed messages still pending for {user}"
        time.sleep(0.5)


def assert_stream_delivered(result: StreamResult) -> None:
    tally = result.tally
    assert len(tally.acks) == SENDERS * PER_SENDER
    acks = list(tally.acks.values())
    assert len({a["msg_id"] for a in acks}) == len(acks), "two sends got one msg_id"
    assert_seqs_contiguous(tally)
    by_msg_id = {a["msg_id"]: (cid, a) for cid, a in tally.acks.items()}
    expected = expected_by_recipient(tally, [i.session.user_id for i in result.inboxes])
    for inbox in result.inboxes:
        # Every acked message arrived, and nothing arrived that was not acked (a
        # send that got `unavailable` and was retried must not appear twice).
        assert inbox.msg_ids() == expected[inbox.session.user_id]
        for frames in inbox.received:
            for msg in frames:
                cid, ack = by_msg_id[msg["msg_id"]]
                assert (msg["body"], msg["seq"]) == (cid, ack["seq"])
            assert_in_order_per_conversation(frames)


def assert_seqs_contiguous(tally: Tally) -> None:
    """Each conversation's seqs are exactly 1..n (no gap, none reused), and
    each sender's rise in its send order."""
    seqs: dict[str, list[int]] = defaultdict(list)
    mine: dict[tuple[str, str], list[int]] = defaultdict(list)
    for cid in sorted(tally.acks, key=lambda c: (c.split("-")[0], int(c.split("-")[1]))):
        ack = tally.acks[cid]
        seqs[ack["conversation_id"]].append(int(ack["seq"]))
        mine[(cid.split("-")[0], ack["conversation_id"])].append(int(ack["seq"]))
    for conversation, got in seqs.items():
        assert sorted(got) == list(range(1, len(got) + 1)), (conversation, got)
    for (sender, conversation), got in mine.items():
        assert got == sorted(got), (sender, conversation, got)


def assert_in_order_per_conversation(frames: list[Frame]) -> None:
    seqs: dict[str, list[int]] = defaultdict(list)
    for msg in frames:
        seqs[msg["conversation_id"]].append(int(msg["seq"]))
    for conversation, got in seqs.items():
        assert got == sorted(set(got)), (conversation, got)


def report(name: str, figures: dict[str, object]) -> None:
    print(f"\n[faults] {name}: {json.dumps(figures)}")


# -------------------------------------------------------------- the broker
def test_broker_restarted_mid_stream_loses_no_acked_message(faulty_stack: FaultyStack) -> None:
    """SIGKILL tansu mid-stream and start it again on the same port and bucket."""

    def restart_broker(_: list[Inbox]) -> None:
        faulty_stack.restart(BROKER)

    result = run_stream(faulty_stack, restart_broker)
    report("broker restart", result.figures())
    assert_stream_delivered(result)


# ------------------------------------------------------- the app processes
def test_consumer_killed_mid_stream_loses_no_acked_message(faulty_stack: FaultyStack) -> None:
    """SIGKILL the bus consumer mid-batch and start it again: its uncommitted
    batch is read again, gets the same seqs, and is stored and pushed once."""

    def restart_consumer(_: list[Inbox]) -> None:
        faulty_stack.restart("consumer")

    result = run_stream(faulty_stack, restart_consumer)
    report("consumer restart", result.figures())
    assert_stream_delivered(result)


def test_gateway_killed_mid_stream_loses_no_acked_message(faulty_stack: FaultyStack) -> None:
    """SIGKILL gateway1 (a sender's and two recipients' gateway) mid-stream and
    start it again: the sender reconnects there and resends what was not acked,
    the recipients reconnect to gateway0 and get what they missed as pending."""

    def restart_gateway(inboxes: list[Inbox]) -> None:
        faulty_stack.restart("gateway1")
        for inbox in inboxes[0::2]:  # recipients 0 and 2 were on gateway1
            inbox.move(0)

    result = run_stream(faulty_stack, restart_gateway)
    report("gateway restart", result.figures())
    assert_stream_delivered(result)


def test_broker_down_send_is_unavailable_then_acked_once_when_back(
    faulty_stack: FaultyStack,
) -> None:
    stack = faulty_stack
    alice, bob = stack.user(), stack.user()
    a, b = connect(stack, 0, alice.token), connect(stack, 1, bob.token)
    try:
        before = a.send("before the outage", to=bob.user_id)
        assert b.receive(timeout=10)["msg_id"] == before["msg_id"]
        stack.kill(BROKER)
        try:
            started = time.monotonic()
            with pytest.raises(ChatError) as refused:
                a.send("during the outage", to=bob.user_id, cid="outage-1")
            refused_after = time.monotonic() - started
            assert refused.value.code == "unavailable"
            assert refused_after < UNAVAILABLE_WITHIN
            status, body = readyz(stack, 0)
            assert status == 503 and "kafka" in body["error"]["message"], body
            assert body["backends"]["kafka"] != "ok"
        finally:
            stack.start(BROKER)
        back = time.monotonic()
        ack = retry_until_acked(a, "during the outage", bob.user_id, "outage-1")
        recovered_after = time.monotonic() - back
        assert ack["seq"] == before["seq"] + 1
        again = a.send("during the outage", to=bob.user_id, cid="outage-1")
        assert (again["msg_id"], again["seq"]) == (ack["msg_id"], ack["seq"])
        msg = b.receive(timeout=10)
        assert (msg["msg_id"], msg["body"]) == (ack["msg_id"], "during the outage")
        time.sleep(1.0)  # the resend and the retries must not bring a second copy
        assert b.messages.empty(), b.messages.get_nowait()
        wait_ready(stack, 0)
        report(
            "broker down",
            {
                "unavailable_after_seconds": round(refused_after, 2),
                "acked_after_broker_back_seconds": round(recovered_after, 2),
            },
        )
    finally:
        a.close()
        b.close()


def test_a_membership_change_while_the_broker_is_down_is_announced_when_back(
    faulty_stack: FaultyStack,
) -> None:
    """The change is committed with its event in the transactional outbox; the
    publish after the commit fails, and the consumer's relay publishes it once
    the broker is back: bob hears of being added, once."""
    stack = faulty_stack
    alice, bob = stack.user(), stack.user()
    group = stack.api(0).create_group(alice.token, "outage", [])["group_id"]
    b = connect(stack, 1, bob.token)
    try:
        stack.kill(BROKER)
        try:
            stack.api(0).add_member(alice.token, group, bob.user_id)  # committed: 201
        finally:
            stack.start(BROKER)
        event = b.receive_event(timeout=60)
        assert (event["event"], event["user_id"], event["group"]) == (
            "member_added",
            bob.user_id,
            group,
        )
        time.sleep(3.0)  # two more relay rounds: nothing published twice
        assert b.events.empty(), b.events.get_nowait()
    finally:
        b.close()


def retry_until_acked(conn: ChatConnection, body: str, to: str, cid: str) -> Frame:
    """Send again with the same id, as a client does, until acked (a timeout
    too: a slow ack after the restart is resent, never lost)."""
    deadline = time.monotonic() + 90
    while True:
        try:
            return conn.send(body, to=to, cid=cid)
        except ChatError as err:
            assert err.code == "unavailable", err
        except TimeoutError:
            pass
        assert time.monotonic() < deadline, "the gateway never recovered from the outage"
        time.sleep(0.2)


def readyz(stack: FaultyStack, gateway: int) -> tuple[int, Frame]:
    try:
        with urllib.request.urlopen(stack.url(gateway) + "/readyz", timeout=10) as answer:
            return answer.status, json.load(answer)
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def wait_ready(stack: FaultyStack, gateway: int) -> None:
    deadline = time.monotonic() + 15
    while (answer := readyz(stack, gateway))[0] != 200:
        assert time.monotonic() < deadline, answer
        time.sleep(0.2)


# ---------------------------------------------------------------- etcd
def test_etcd_leader_killed_mid_stream_routes_fail_over(faulty_stack: FaultyStack) -> None:
    """SIGKILL the etcd leader (also the endpoint every client tries first) mid-stream;
    meanwhile a recipient moves to the other gateway, so that its old route must be
    deleted and its new one written, and watched by the consumer, through the two
    members left. Then the member comes back."""
    stack = faulty_stack
    cluster = stack.cluster
    cluster.move_leader(0)  # the first endpoint in IMCHAT_ETCD_ENDPOINTS
    survivors = ",".join(cluster.url(i) for i in (1, 2))
    moved: dict[str, object] = {}

    def kill_leader(inboxes: list[Inbox]) -> None:
        inbox = inboxes[0]
        old = routes_of(stack, inbox.session.user_id, cluster.endpoints)
        stack.kill("etcd0")
        down = time.monotonic()
        try:
            inbox.move(gateway=0)  # run_stream put the first recipient on gateway 1
            wait_for(
                lambda: (r := routes_of(stack, inbox.session.user_id, survivors)) and r != old,
                10.0,
                "the moved recipient's route on the surviving members",
                interval=0.1,
            )
            moved["route_moved_after_seconds"] = round(time.monotonic() - down, 2)
            moved["new_leader"] = cluster.leader()
            assert len(old) == 1
            assert len(routes_of(stack, inbox.session.user_id, survivors)) == 1
        finally:
            stack.start("etcd0")
        moved["etcd0_back_after_seconds"] = round(time.monotonic() - down, 2)

    result = run_stream(stack, kill_leader)
    report("etcd leader restart", {**result.figures(), **moved})
    assert moved["new_leader"] in (1, 2)
    assert_stream_delivered(result)
    assert len(result.inboxes[0].received) == 2, "the recipient did not move"


def routes_of(stack: FaultyStack, user_id: str, endpoints: str) -> set[str]:
    """The gateway ids holding a route to ``user_id``, read straight from etcd."""
    prefix = f"{stack.env['IMCHAT_ETCD_PREFIX']}/routes/{quote(user_id, safe='')}/"
    done = subprocess.run(
        ["etcdctl", f"--endpoints={endpoints}", "get", "--prefix", "--keys-only", prefix],
        capture_output=True,
        text=True,
        check=True,
        env={"ETCDCTL_API": "3", "PATH": "/usr/bin:/bin"},
    )
    return {line.rsplit("/", 1)[1] for line in done.stdout.split() if line.strip()}
