"""Per-connection frame rate limits and the cap on connections per user."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
import websocket

from imchat.client import ApiClient, ChatConnection
from tests.support.clients import register_users
from tests.support.server import EmbeddedServer, run_server
from tests.support.sockets import RawSocket

pytestmark = pytest.mark.e2e

LIMITS = {
    "IMCHAT_FRAME_RATE_PER_SECOND": "5",
    "IMCHAT_FRAME_BURST": "10",
    "IMCHAT_MAX_CONNECTIONS_PER_USER": "2",
}


@pytest.fixture(scope="module")
def limited_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedServer]:
    yield from run_server(tmp_path_factory.mktemp("limited"), LIMITS)


def test_a_flood_gets_rate_limited_errors_and_the_connection_lives(
    limited_server: EmbeddedServer,
) -> None:
    (alice,) = register_users(limited_server.base_url, 1)
    sock = RawSocket(limited_server.base_url, alice.token)
    try:
        assert sock.recv()["type"] == "synced"
        for i in range(30):
            sock.send({"type": "send", "id": f"f{i}", "to": "nobody", "body": "x"})
        answers = [sock.recv() for _ in range(30)]
        limited = [a for a in answers if a.get("code") == "rate_limited"]
        # The burst of 10 passes (to an unknown user: not_found), the rest is refused.
        assert 15 <= len(limited) <= 20
        assert {a["id"] for a in limited} <= {f"f{i}" for i in range(30)}
        assert all(a["code"] in ("not_found", "rate_limited") for a in answers)
        time.sleep(0.5)  # the bucket refills: the connection is usable again
        sock.ping()
    finally:
        sock.close()


def test_connections_per_user_are_capped(limited_server: EmbeddedServer) -> None:
    (bob,) = register_users(limited_server.base_url, 1)
    url = limited_server.base_url.replace("http", "ws") + f"/ws?token={bob.token}"
    first, second = websocket.create_connection(url), websocket.create_connection(url)
    try:
        with pytest.raises(websocket.WebSocketBadStatusException) as refused:
            websocket.create_connection(url)
        assert refused.value.status_code == 429
        assert b"rate_limited" in refused.value.resp_body
    finally:
        first.close()
        second.close()


# The new frames share the one bucket: a burst of 6, refilled at 1 a second.
SMALL_BURST = {"IMCHAT_FRAME_RATE_PER_SECOND": "1", "IMCHAT_FRAME_BURST": "6"}


@pytest.fixture(scope="module")
def small_burst_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedServer]:
    yield from run_server(tmp_path_factory.mktemp("small-burst"), SMALL_BURST)


def _answers(sock: RawSocket, seconds: float) -> list[dict[str, Any]]:
    """Every frame that arrives within ``seconds``."""
    frames, deadline = [], time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        try:
            frames.append(sock.recv(left))
        except websocket.WebSocketTimeoutException:
            break
    return frames


def test_typing_read_edit_delete_and_react_take_from_the_same_bucket(
    small_burst_server: EmbeddedServer,
) -> None:
    """Six frames of the new types use up the burst (typing and read, which get no
    answer, count as much as the others); the next ones are refused with
    rate_limited, nothing of them applied; the connection lives, and once the
    bucket refilled a refused edit sent again is accepted."""
    base = small_burst_server.base_url
    alice, bob = register_users(base, 2)
    with ChatConnection(base, alice.token) as first:
        first.wait_synced()
        ack = first.send("original", to=bob.user_id)
    time.sleep(1.5)  # that connection's frames refilled: the next socket starts full anyway
    where = {"conversation_id": ack["conversation_id"], "seq": ack["seq"]}
    typing = {"type": "typing", "conversation_id": where["conversation_id"]}
    burst = [
        typing, typing, {"type": "read", **where},
        {"type": "edit", "id": "e1", **where, "body": "edited once"},
        {"type": "react", "id": "r1", **where, "emoji": "+1", "on": True},
        {"type": "delete", "id": "d1", **{**where, "seq": 99}},  # no such message
    ]  # fmt: skip
    over = [
        typing, {"type": "read", **where},
        {"type": "edit", "id": "e2", **where, "body": "edited twice"},
        {"type": "react", "id": "r2", **where, "emoji": "ok", "on": True},
        {"type": "delete", "id": "d2", **where},
    ]  # fmt: skip
    sock = RawSocket(base, alice.token)
    try:
        assert sock.recv()["type"] == "synced"
        for frame in [*burst, *over]:
            sock.send(frame)
        frames = _answers(sock, 3.0)
        answers = [f for f in frames if f["type"] in ("ack", "error")]
        by_id = {f.get("id"): f for f in answers if f.get("id")}
        limited = [f for f in answers if f.get("code") == "rate_limited"]
        # The burst: each frame with an id gets its own answer, none rate_limited.
        assert (by_id["e1"]["type"], by_id["r1"]["type"]) == ("ack", "ack"), answers
        assert by_id["d1"]["code"] == "not_found", answers
        # Past it: refused (one may pass if the bucket refilled a token meanwhile).
        assert len(limited) >= len(over) - 1, answers
        assert {f.get("id") for f in limited} <= {None, "e2", "r2", "d2"}, answers
        assert all(f.get("code") != "rate_limited" for f in answers if f.get("id") in
                   ("e1", "r1", "d1")), answers  # fmt: skip
        time.sleep(1.2)  # a token back: the connection is usable
        sock.ping()
        refused = {f["id"] for f in limited if f.get("id")}
        deleted = "d2" not in refused  # passed on a token refilled meanwhile
        if "e2" in refused and not deleted:  # nothing of it was kept: accepted now
            sock.send(over[2])
            assert sock.recv_type("ack")["id"] == "e2"
    finally:
        sock.close()
    message = ApiClient(base).history(alice.token, where["conversation_id"])["messages"][0]
    assert message["deleted"] is deleted
    if not deleted:
        assert message["body"] == "edited twice"
        mine = [alice.user_id]
        assert message["reactions"] == {"+1": mine} | ({} if "r2" in refused else {"ok": mine})
