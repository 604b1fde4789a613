"""The whole production path: two gateways, the consumer, a Celery worker."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import time

import pytest
import redis

from imchat.client import ChatConnection, ChatError

from .conftest import CELERY_REDIS_DB, Stack

pytestmark = [pytest.mark.integration, pytest.mark.e2e]


def connect(stack: Stack, gateway: int, token: str) -> ChatConnection:
    conn = stack.api(gateway).connect(token)
    conn.wait_synced()
    return conn


def test_direct_message_crosses_gateways(stack: Stack) -> None:
    alice, bob = stack.user(), stack.user()
    with connect(stack, 0, alice.token) as a, connect(stack, 1, bob.token) as b:
        ack = a.send("hello across gateways", to=bob.user_id)
        msg = b.receive()
        assert (msg["msg_id"], msg["seq"], msg["from"]) == (ack["msg_id"], 1, alice.user_id)
        assert msg["conversation_id"] == ack["conversation_id"]
        reply = b.send("and back", to=alice.user_id)
        assert reply["seq"] == 2
        assert a.receive()["body"] == "and back"


def test_group_message_and_events_reach_members_on_both_gateways(stack: Stack) -> None:
    owner, second, third = stack.user(), stack.user(), stack.user()
    group = stack.api().create_group(owner.token, "across", [second.user_id])
    with (
        connect(stack, 0, owner.token) as o,
        connect(stack, 1, second.token) as s,
        connect(stack, 1, third.token) as t,
    ):
        stack.api().add_member(owner.token, group["group_id"], third.user_id)
        for conn in (o, s, t):
            event = conn.receive_event()
            assert (event["event"], event["user_id"]) == ("member_added", third.user_id)
        ack = o.send("hi all", group=group["group_id"])
        for conn in (s, t):
            msg = conn.receive()
            assert (msg["msg_id"], msg["group"]) == (ack["msg_id"], group["group_id"])


def test_pending_messages_follow_the_user_to_another_gateway(stack: Stack) -> None:
    alice, bob = stack.user(), stack.user()
    with connect(stack, 0, alice.token) as a:
        acks = [a.send(f"m{i}", to=bob.user_id) for i in range(5)]
    b = stack.api(1).connect(bob.token)
    assert b.wait_synced() == 5
    got = [b.receive() for _ in range(5)]
    assert [m["seq"] for m in got] == [ack["seq"] for ack in acks] == [1, 2, 3, 4, 5]
    b.confirm(got[-1]["conversation_id"], 5)
    b.close()
    # The confirmation is a Celery task: give the worker a moment.
    deadline = time.monotonic() + 10
    while True:
        with stack.api(0).connect(bob.token) as again:
            if again.wait_synced() == 0:
                break
        assert time.monotonic() < deadline, "delivered never trimmed the pending messages"
        time.sleep(0.2)


@pytest.mark.faults
def test_a_dead_gateways_users_reconnect_elsewhere_and_get_pending(stack: Stack) -> None:
    alice, bob = stack.user(), stack.user()
    b = stack.api(1).connect(bob.token)
    b.wait_synced()
    stack.restart("gateway1")  # SIGKILL: no unregister, the lease lingers
    with connect(stack, 0, alice.token) as a:
        ack = a.send("while you were away", to=bob.user_id)
    with stack.api(0).connect(bob.token) as again:
        assert again.wait_synced() == 1
        assert again.receive()["msg_id"] == ack["msg_id"]


@pytest.mark.faults
def test_seq_never_goes_back_when_redis_loses_its_keys(stack: Stack) -> None:
    alice, bob = stack.user(), stack.user()
    with connect(stack, 0, alice.token) as a:
        before = [a.send(f"b{i}", to=bob.user_id)["seq"] for i in range(3)]
        stack.redis().flushdb()
        after = [a.send(f"a{i}", to=bob.user_id)["seq"] for i in range(3)]
    assert before == [1, 2, 3]
    assert after[0] > before[-1]
    assert after == [after[0], after[0] + 1, after[0] + 2]


@pytest.mark.faults
def test_consumer_killed_mid_stream_loses_nothing(stack: Stack) -> None:
    alice, bob = stack.user(), stack.user()
    with connect(stack, 0, alice.token) as a, connect(stack, 1, bob.token) as b:
        cids = [a.send_nowait(f"s{i}", to=bob.user_id) for i in range(100)]
        stack.restart("consumer")
        cids += [a.send_nowait(f"t{i}", to=bob.user_id) for i in range(100)]
        acks = [a.wait_ack(cid, timeout=30) for cid in cids]
        got = [b.receive(timeout=30) for _ in range(200)]
    assert [ack["seq"] for ack in acks] == list(range(1, 201))
    assert [m["seq"] for m in got] == list(range(1, 201))
    assert len({m["msg_id"] for m in got}) == 200


@pytest.mark.faults
def test_redis_restarted_mid_stream_loses_no_acked_message(stack: Stack) -> None:
    """Redis dies (every key lost) during a stream: sends in the outage get
    `unavailable` or an ack, every acked message arrives once, seqs only grow."""
    alice, bob = stack.user(), stack.user()
    with connect(stack, 0, alice.token) as a, connect(stack, 1, bob.token) as b:
        acked = [a.send(f"before{i}", to=bob.user_id) for i in range(20)]
        stack.restart("redis")
        for i in range(20):
            acked.append(send_retrying(a, f"after{i}", bob.user_id))
        got = [b.receive(timeout=30) for _ in acked]
    seqs = [ack["seq"] for ack in acked]
    assert seqs[:20] == list(range(1, 21))
    assert all(later > earlier for earlier, later in itertools.pairwise(seqs))
    assert [m["msg_id"] for m in got] == [ack["msg_id"] for ack in acked]


def send_retrying(
    conn: ChatConnection, body: str, to: str, attempts: int = 50
) -> dict[str, object]:
    """Retry with the same client id, as the contract tells a client to on `unavailable`."""
    cid = f"retry-{body}"
    for _ in range(attempts):
        try:
            return conn.send(body, to=to, cid=cid)
        except ChatError as err:
            assert err.code == "unavailable", err
            time.sleep(0.1)
    raise AssertionError(f"{body} was never accepted")


@pytest.mark.faults
def test_gateway_killed_mid_stream_its_user_gets_everything_elsewhere(stack: Stack) -> None:
    alice, bob = stack.user(), stack.user()
    with connect(stack, 0, alice.token) as a:
        b = stack.api(1).connect(bob.token)
        b.wait_synced()
        cids = [a.send_nowait(f"s{i}", to=bob.user_id) for i in range(50)]
        stack.restart("gateway1")  # SIGKILL mid-stream
        cids += [a.send_nowait(f"t{i}", to=bob.user_id) for i in range(50)]
        acked = {a.wait_ack(cid, timeout=30)["msg_id"] for cid in cids}
        before = drain(b)
        with stack.api(0).connect(bob.token) as again:
            count = again.wait_synced()
            after = [again.receive() for _ in range(count)]
    assert_increasing(before)
    assert_increasing(after)
    assert acked <= {m["msg_id"] for m in before + after}


@pytest.mark.faults
def test_worker_child_killed_mid_batch_confirmations_still_land(stack: Stack) -> None:
    alice, bob = stack.user(), stack.user()
    with connect(stack, 0, alice.token) as a, connect(stack, 1, bob.token) as b:
        for i in range(200):
            a.send_nowait(f"c{i}", to=bob.user_id)
            if i == 100:
                kill_worker_children(stack)
        for _ in range(200):
            msg = b.receive(timeout=30)
            b.confirm(msg["conversation_id"], msg["seq"])
    deadline = time.monotonic() + 30
    while True:
        with stack.api(0).connect(bob.token) as again:
            if again.wait_synced() == 0:
                return
        assert time.monotonic() < deadline, "confirmations lost with the worker"
        time.sleep(0.3)


@pytest.mark.faults
def test_whole_worker_killed_with_tasks_in_hand_confirmations_still_land(stack: Stack) -> None:
    """SIGKILL the whole Celery worker while it holds the confirmation task,
    taken from the queue but not acked: they come back after the visibility
    timeout (30 s) and a new worker runs them."""
    alice, bob = stack.user(), stack.user()
    broker = redis.Redis(port=stack.redis_port, db=CELERY_REDIS_DB)
    children = worker_children(stack)
    for pid in children:  # the pool takes tasks but cannot finish them
        os.kill(pid, signal.SIGSTOP)
    try:
        with connect(stack, 0, alice.token) as a, connect(stack, 1, bob.token) as b:
            for i in range(20):
                a.send_nowait(f"w{i}", to=bob.user_id)
            last = [b.receive(timeout=30) for _ in range(20)][-1]
            b.confirm(last["conversation_id"], last["seq"])  # trims 1..20: one task
            # The task in the worker's hands: none queued, one unacked.
            deadline = time.monotonic() + 15
            while broker.llen("celery") or not broker.hlen("unacked"):
                assert time.monotonic() < deadline, "the worker never took the task"
                time.sleep(0.1)
    finally:
        for pid in children:
            os.kill(pid, signal.SIGKILL)
        stack.kill("worker")
    stack.start("worker")
    killed = time.monotonic()
    with stack.api(0).connect(bob.token) as again:
        assert again.wait_synced() > 0, "the confirmations ran before the kill"

    while True:
        with stack.api(0).connect(bob.token) as again:
            if again.wait_synced() == 0:
                break
        assert time.monotonic() < killed + 75, "confirmations lost with the worker"
        time.sleep(1.0)
    print(f"confirmations landed {time.monotonic() - killed:.1f} s after the kill")
    while broker.hlen("unacked"):
        assert time.monotonic() < killed + 90, "a restored task was never acked"
        time.sleep(0.5)


def drain(conn: ChatConnection) -> list[dict[str, object]]:
    frames = []
    while not conn.messages.empty():
        frames.append(conn.messages.get_nowait())
    return frames


def assert_increasing(frames: list[dict[str, object]]) -> None:
    seqs = [int(str(f["seq"])) for f in frames]
    assert seqs == sorted(set(seqs)), seqs


def worker_children(stack: Stack) -> list[int]:
    """The Celery worker's pool processes."""
    worker = stack.processes["worker"].popen
    assert worker is not None
    children = subprocess.run(
        ["pgrep", "-P", str(worker.pid)], capture_output=True, text=True, check=False
    ).stdout.split()
    assert children, "the worker has no pool process"
    return [int(pid) for pid in children]


def kill_worker_children(stack: Stack) -> None:
    """SIGKILL the Celery pool processes: their tasks (acks_late) run again."""
    for pid in worker_children(stack):
        os.kill(pid, signal.SIGKILL)


@pytest.mark.faults
def test_a_gateway_stopped_cleanly_drops_its_routes_at_once(stack: Stack) -> None:
    from imchat.backends.etcd import EtcdRouter
    from imchat.config import load_settings

    bob = stack.user()
    router = EtcdRouter(load_settings(environ=stack.env))
    try:
        b = stack.api(1).connect(bob.token)
        b.wait_synced()
        deadline = time.monotonic() + 2
        while not router.gateways_for(bob.user_id):
            assert time.monotonic() < deadline, "the route never appeared"
            time.sleep(0.02)
        gateway = stack.processes["gateway1"]
        assert gateway.popen is not None
        gateway.popen.terminate()  # SIGTERM: a clean stop revokes the lease
        assert gateway.popen.wait(10) == 0
        deadline = time.monotonic() + 2  # not the 90 s of a lease running out
        while router.gateways_for(bob.user_id):
            assert time.monotonic() < deadline, "the route outlived its gateway"
            time.sleep(0.02)
    finally:
        router.close()
        stack.restart("gateway1")
