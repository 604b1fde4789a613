"""The Web Push dispatcher: what delivery leaves unrouted becomes a few
``imchat.push_notify`` jobs, never one per message, and handing it over
never waits on the job."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from imchat import metrics
from imchat.config import Settings
from imchat.container import Services
from imchat.services.delivery.outbox import Outbox
from imchat.services.jobs import JobRunner
from imchat.services.push import dispatcher as dispatcher_module
from imchat.services.push.notify import PUSH_NOTIFY
from imchat.wire.frames import MsgFrame
from tests.support.waiting import wait_for

pytestmark = pytest.mark.unit


class RecordingJobs(JobRunner):
    """Celery's place: records each dispatched job (optionally slow to hand over)."""

    inline = False

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.dispatched: list[tuple[str, Any]] = []
        self.lock = threading.Lock()

    def dispatch(self, name: str, payload: Any) -> None:
        time.sleep(self.delay)
        with self.lock:
            self.dispatched.append((name, payload))

    def messages(self) -> list[dict[str, Any]]:
        with self.lock:
            return [m for _, payload in self.dispatched for m in payload["messages"]]


@pytest.fixture
def services(settings: Settings) -> Iterator[Services]:
    built = Services(settings)
    yield built
    built.close()


def frame(n: int, sender: str, to: str) -> MsgFrame:
    return MsgFrame(
        msg_id=uuid.uuid4().hex,
        conversation_id=f"d:{sender}:{to}",
        seq=n,
        sender=sender,
        body=f"message {n}",
        ts=1_700_000_000_000 + n,
        to=to,
        group=None,
        reply_to=None,
    )


def deliver(services: Services, count: int, to: list[str]) -> list[MsgFrame]:
    """``count`` bus batches of one message each, as the consumer runs them."""
    frames = []
    for n in range(1, count + 1):
        outbox = Outbox(services)
        item = frame(n, "alice", to[n % len(to)])
        outbox.push_message(item, [item.to or "", "alice"], "conn-alice")
        outbox.send()
        frames.append(item)
    return frames


def test_many_messages_become_a_few_jobs_with_the_unrouted_recipients_only(
    services: Services,
) -> None:
    jobs = RecordingJobs()
    services.__dict__["jobs"] = jobs
    services.router.register_gateway("gw-1")
    services.router.add_route("bob", "gw-1")  # online: never in a push job
    frames = deliver(services, 300, ["bob", "carol", "dave"])

    wait_for(lambda: len(jobs.messages()) == 200, 5.0, "the unrouted messages handed over")
    time.sleep(dispatcher_module.FLUSH_SECONDS * 2)  # nothing more comes
    assert {name for name, _ in jobs.dispatched} == {PUSH_NOTIFY}
    assert len(jobs.dispatched) <= 5, len(jobs.dispatched)  # 300 messages, a few jobs
    handed = jobs.messages()
    assert [m["msg_id"] for m in handed] == [f.msg_id for f in frames if f.to != "bob"]
    assert all(m["users"] == [m["conversation_id"].split(":")[2]] for m in handed)
    assert all(m["sender"] == "alice" and "alice" not in m["users"] for m in handed)


def test_a_slow_hand_over_never_holds_delivery_up(services: Services) -> None:
    jobs = RecordingJobs(delay=2.0)  # a broker (or, embedded, a push service) that is slow
    services.__dict__["jobs"] = jobs
    deliver(services, 1, ["carol"])
    time.sleep(dispatcher_module.FLUSH_SECONDS * 2)  # the first batch is being handed over

    started = time.monotonic()
    deliver(services, 500, ["carol", "dave"])
    assert time.monotonic() - started < 1.0
    wait_for(lambda: len(jobs.messages()) == 501, 10.0, "every message handed over")
    assert len(jobs.dispatched) <= 4


def test_a_full_queue_drops_instead_of_waiting(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dispatcher_module, "MAX_QUEUED", 10)
    jobs = RecordingJobs(delay=1.0)
    services.__dict__["jobs"] = jobs
    deliver(services, 1, ["carol"])
    time.sleep(dispatcher_module.FLUSH_SECONDS * 2)  # the first batch is being handed over
    dropped = metrics.PUSH_DROPPED._value.get()

    started = time.monotonic()
    deliver(services, 100, ["carol"])
    assert time.monotonic() - started < 0.5
    assert metrics.PUSH_DROPPED._value.get() - dropped == 90
    wait_for(lambda: len(jobs.messages()) == 11, 5.0, "the first and the ten queued")
    time.sleep(1.5)
    assert len(jobs.messages()) == 11
