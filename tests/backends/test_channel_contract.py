"""The GatewayChannel contract, run against the embedded twin and Redis pub/sub alike.

Then what only Redis has: a listener whose connection was lost is handed the
resync signal once it is back (on a private redis-server started by the
test, never the shared one).

Pub/sub channels are shared by every database of a Redis server, so each
test names its own gateways.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import pytest

from imchat.backends.base import GatewayChannel
from imchat.backends.channel_embedded import EmbeddedChannel
from imchat.backends.channel_redis import RedisChannel
from imchat.config import Settings

from .redis_server import PrivateRedis

Gateway = Callable[[str], str]
WAIT_SECONDS = 5.0
# A payload nobody should get needs some time to arrive before the test can
# say it did not: Redis delivers in well under this.
SETTLE_SECONDS = 0.3


class Inbox:
    """What one listener was handed, in order, and a wait for more of it."""

    def __init__(self) -> None:
        self.payloads: list[bytes] = []
        self._changed = threading.Condition()

    def __call__(self, payload: bytes) -> None:
        with self._changed:
            self.payloads.append(payload)
            self._changed.notify_all()

    def wait_for(self, payload: bytes, timeout: float = WAIT_SECONDS) -> list[bytes]:
        """Everything received up to ``payload``; fail when it does not come."""
        with self._changed:
            arrived = self._changed.wait_for(lambda: payload in self.payloads, timeout)
            assert arrived, f"{payload!r} not received within {timeout:g}s: {self.payloads!r}"
            return list(self.payloads)

    def take(self, payload: bytes, timeout: float = WAIT_SECONDS) -> list[bytes]:
        """Like ``wait_for``, then forget everything up to ``payload`` (included)."""
        with self._changed:
            received = self.wait_for(payload, timeout)
            del self.payloads[: received.index(payload) + 1]
            return received[: received.index(payload) + 1]


def listening(channel: GatewayChannel, gateway_id: str) -> Inbox:
    """Listen for ``gateway_id`` and return once payloads sent from now on arrive.

    A Redis listener subscribes in the background: probe until a probe gets
    through, then a fence sent after every probe marks the start of the test.
    """
    inbox = Inbox()
    channel.listen(gateway_id, inbox)
    deadline = time.monotonic() + WAIT_SECONDS
    while not inbox.payloads:
        assert time.monotonic() < deadline, f"{gateway_id} never started listening"
        channel.send_many([(gateway_id, b"probe")])
        time.sleep(0.02)
    channel.send_many([(gateway_id, b"fence")])
    inbox.take(b"fence")
    return inbox


@pytest.fixture
def gateway(unique: str) -> Gateway:
    return lambda name: f"t-{unique}-{name}"


@pytest.fixture(
    params=[
        pytest.param("embedded", marks=pytest.mark.unit),
        pytest.param("redis", marks=pytest.mark.integration),
    ]
)
def channel(request: pytest.FixtureRequest, settings: Settings) -> Iterator[GatewayChannel]:
    built: GatewayChannel
    if request.param == "embedded":
        built = EmbeddedChannel()
    else:
        built = RedisChannel(settings.replace(redis_url=request.getfixturevalue("redis_url")))
    yield built
    built.close()


def test_payloads_to_one_gateway_arrive_in_order(channel: GatewayChannel, gateway: Gateway) -> None:
    inbox = listening(channel, gateway("a"))
    sent = [f"p{n}".encode() for n in range(50)]

    for n in range(0, 50, 10):  # several calls, several payloads each
        channel.send_many([(gateway("a"), p) for p in sent[n : n + 10]])

    assert inbox.wait_for(b"p49") == sent


def test_a_gateway_gets_only_its_own_payloads(channel: GatewayChannel, gateway: Gateway) -> None:
    a, b = listening(channel, gateway("a")), listening(channel, gateway("b"))

    channel.send_many([(gateway("a"), b"for-a-1"), (gateway("b"), b"for-b-1")])
    channel.send_many([(gateway("a"), b"for-a-2")])
    channel.send_many([(gateway("c"), b"for-nobody")])  # nobody listens: no error either
    # Sent last: whatever reached a listener by mistake came before these.
    channel.send_many([(gateway("a"), b"end"), (gateway("b"), b"end")])

    assert a.wait_for(b"end") == [b"for-a-1", b"for-a-2", b"end"]
    assert b.wait_for(b"end") == [b"for-b-1", b"end"]


def test_send_many_reaches_several_gateways_in_one_call(
    channel: GatewayChannel, gateway: Gateway
) -> None:
    inboxes = {name: listening(channel, gateway(name)) for name in "abc"}

    channel.send_many(
        [
            (gateway("a"), b"a1"),
            (gateway("b"), b"b1"),
            (gateway("a"), b"a2"),
            (gateway("c"), b"c1"),
            (gateway("b"), b"b2"),
            (gateway("a"), b"a3"),
        ]
    )
    channel.send_many([])  # nothing to send is fine

    assert inboxes["a"].wait_for(b"a3") == [b"a1", b"a2", b"a3"]
    assert inboxes["b"].wait_for(b"b2") == [b"b1", b"b2"]
    assert inboxes["c"].wait_for(b"c1") == [b"c1"]


def test_stop_listening_stops_delivery(channel: GatewayChannel, gateway: Gateway) -> None:
    stopped, other = listening(channel, gateway("a")), listening(channel, gateway("b"))
    channel.send_many([(gateway("a"), b"before")])
    assert stopped.wait_for(b"before") == [b"before"]

    channel.stop_listening(gateway("a"))
    channel.send_many([(gateway("a"), b"after"), (gateway("b"), b"still")])

    assert other.wait_for(b"still") == [b"still"]
    time.sleep(SETTLE_SECONDS)
    assert stopped.payloads == [b"before"]
    channel.stop_listening(gateway("a"))  # stopping twice is fine

    # Listening again starts afresh: the new listener gets what is sent now, the old none.
    again = listening(channel, gateway("a"))
    channel.send_many([(gateway("a"), b"again")])
    assert again.wait_for(b"again") == [b"again"]
    time.sleep(SETTLE_SECONDS)
    assert stopped.payloads == [b"before"]


# ---------------------------------------------------------- Redis only
@pytest.mark.integration
def test_redis_listener_is_handed_resync_after_the_connection_came_back(
    private_redis: PrivateRedis, settings: Settings
) -> None:
    channel = RedisChannel(settings.replace(redis_url=private_redis.url))
    try:
        inbox = listening(channel, "gw-1")
        channel.send_many([("gw-1", b"before")])
        assert inbox.take(b"before") == [b"before"]

        private_redis.stop()  # what is sent meanwhile is lost: the gateway must catch up
        private_redis.start()

        assert inbox.take(GatewayChannel.RESYNC, timeout=10) == [GatewayChannel.RESYNC]
        channel.send_many([("gw-1", b"after")])
        assert inbox.wait_for(b"after") == [b"after"]
    finally:
        channel.close()
