"""Web Push on the production path: the consumer (Kafka) finds the unrouted
recipients through etcd, its dispatcher hands batches to Celery (Redis), and
the worker sends them to the local push service, which checks the VAPID
signature and decrypts each payload; subscriptions live in MariaDB."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from imchat.client import ChatConnection
from imchat.wire.ids import direct_conversation_id
from tests.support.push_service import PushService
from tests.support.waiting import wait_for

from .conftest import Stack

pytestmark = [pytest.mark.integration, pytest.mark.e2e]
ARRIVES = 15.0
QUIET = 2.0


@pytest.fixture(scope="module")
def push_service(stack: Stack) -> Iterator[PushService]:
    service = PushService().start()
    service.vapid_key = stack.api(1).vapid_public_key(stack.user().token)
    yield service
    service.stop()


@pytest.fixture(autouse=True)
def no_bad_requests(push_service: PushService) -> Iterator[None]:
    yield
    assert push_service.problems() == []


def connect(stack: Stack, gateway: int, token: str) -> ChatConnection:
    conn = stack.api(gateway).connect(token)
    conn.wait_synced()
    return conn


def push_tasks(stack: Stack) -> int:
    """How many imchat.push_notify tasks the worker has received so far."""
    log = stack.processes["worker"].log.read_text(errors="replace")
    return sum("imchat.push_notify[" in line and "received" in line for line in log.splitlines())


def test_an_offline_user_is_notified_and_an_online_one_is_not(
    stack: Stack, push_service: PushService
) -> None:
    alice, bob = stack.user(), stack.user()
    browser = push_service.browser()
    stack.api(1).subscribe_push(bob.token, browser.subscription)
    with connect(stack, 0, alice.token) as a:
        ack = a.send("bob is away", to=bob.user_id)
        wait_for(lambda: push_service.to(browser), ARRIVES, "the push through Celery")
        with connect(stack, 1, bob.token) as b:
            assert b.receive()["msg_id"] == ack["msg_id"]  # pending, as before
            a.send("bob is here", to=bob.user_id)
            assert b.receive()["body"] == "bob is here"
            time.sleep(QUIET)
    (received,) = push_service.to(browser)
    assert received.answered == 201
    assert received.payload is not None
    assert received.payload["msg_id"] == ack["msg_id"]
    assert received.payload["conversation_id"] == direct_conversation_id(alice.user_id, bob.user_id)
    assert received.payload["sender"] == alice.user_id
    assert received.payload["body"] == "bob is away"


def test_a_burst_is_a_few_tasks_and_a_gone_subscription_is_removed(
    stack: Stack, push_service: PushService
) -> None:
    alice, bob = stack.user(), stack.user()
    kept, gone = push_service.browser(), push_service.browser("gone")
    for browser in (kept, gone):
        stack.api(0).subscribe_push(bob.token, browser.subscription)
    tasks_before = push_tasks(stack)
    with connect(stack, 0, alice.token) as a:
        cids = [a.send_nowait(f"burst {n}", to=bob.user_id) for n in range(40)]
        for cid in cids:
            a.wait_ack(cid)
        wait_for(lambda: len(push_service.to(kept)) == 40, ARRIVES, "40 notifications")
        time.sleep(QUIET)
        tasks = push_tasks(stack) - tasks_before
        assert 1 <= tasks <= 10, tasks  # 40 messages, far fewer tasks
        # The push service said 410 to the first notification of ``gone``:
        # the subscription was removed, so it got at most the one batch's worth.
        sent_to_gone = len(push_service.to(gone))
        a.send("after the burst", to=bob.user_id)
        wait_for(lambda: len(push_service.to(kept)) == 41, ARRIVES, "the next notification")
        time.sleep(QUIET)
    assert len(push_service.to(gone)) == sent_to_gone
    assert all(r.answered == 410 for r in push_service.to(gone))
    bodies = sorted(r.payload["body"] for r in push_service.to(kept) if r.payload)
    assert bodies == sorted([f"burst {n}" for n in range(40)] + ["after the burst"])


def test_a_slow_push_service_never_slows_delivery(stack: Stack, push_service: PushService) -> None:
    alice, bob, carol = stack.user(), stack.user(), stack.user()
    slow = push_service.browser("slow")
    stack.api(0).subscribe_push(bob.token, slow.subscription)
    with connect(stack, 0, alice.token) as a, connect(stack, 1, carol.token) as c:
        a.send("to offline bob", to=bob.user_id)
        wait_for(lambda: push_service.to(slow), ARRIVES, "the slow push service holding it")
        for n in range(5):
            started = time.monotonic()
            a.send(f"to bob {n}", to=bob.user_id)
            a.send(f"to carol {n}", to=carol.user_id)
            assert c.receive(timeout=1.5)["body"] == f"to carol {n}"
            assert time.monotonic() - started < 1.5
