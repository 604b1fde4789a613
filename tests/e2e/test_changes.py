"""Edits, deletes and reactions over real sockets on the embedded default: acks,
``update`` frames to every participant's connections, history's current state,
idempotent resends, every error, the edit window and group moderation."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from imchat.client import ApiClient, Session
from tests.support.clients import register_users
from tests.support.server import run_server
from tests.support.sockets import RawSocket, Sockets

pytestmark = pytest.mark.e2e

Users = Callable[[int], list[Session]]
Frame = dict[str, Any]


def answer(conn: RawSocket) -> Frame:
    """The next frame but ``update`` frames of earlier changes."""
    while True:
        frame = conn.recv()
        if frame["type"] != "update":
            return frame


def send(conn: RawSocket, cid: str, body: str, **target: Any) -> Frame:
    conn.send({"type": "send", "id": cid, "body": body, **target})
    return answer(conn)


def change(
    conn: RawSocket, kind: str, cid: str, conversation_id: str, seq: int, **rest: Any
) -> Frame:
    """A change answered by its ack or its error (the first frame back)."""
    conn.send({"type": kind, "id": cid, "conversation_id": conversation_id, "seq": seq, **rest})
    return answer(conn)


def error_code(frame: Frame, cid: str) -> str:
    assert (frame["type"], frame["id"]) == ("error", cid), frame
    return str(frame["code"])


def one_message(
    users: Users, sockets: Sockets
) -> tuple[Session, Session, RawSocket, RawSocket, RawSocket, Frame]:
    alice, bob = users(2)
    a, a2, b = sockets.raw(alice), sockets.raw(alice), sockets.raw(bob)
    ack = send(a, "m1", "hello", to=bob.user_id)
    assert b.recv_type("msg")["seq"] == 1
    assert a2.recv_type("msg")["seq"] == 1
    return alice, bob, a, a2, b, ack


def test_an_edit_is_acked_pushed_to_all_and_in_history(
    api: ApiClient, users: Users, sockets: Sockets
) -> None:
    alice, bob, a, a2, b, sent = one_message(users, sockets)
    conv = sent["conversation_id"]
    ack = change(a, "edit", "e1", conv, 1, body="hello, edited")
    assert (ack["type"], ack["id"], ack["conversation_id"], ack["seq"], ack["msg_id"]) == (
        "ack",
        "e1",
        conv,
        1,
        sent["msg_id"],
    )
    for conn in (a, a2, b):
        update = conn.recv_type("update")
        assert (update["kind"], update["by"], update["seq"], update["msg_id"]) == (
            "edited",
            alice.user_id,
            1,
            sent["msg_id"],
        )
        assert update["message"]["body"] == "hello, edited"
        assert update["message"]["edited_at"] is not None
    for user in (alice, bob):
        (m,) = api.all_messages(user.token, conv)
        assert (m["body"], m["deleted"], m["reactions"]) == ("hello, edited", False, {})
        assert m["edited_at"] == update["message"]["edited_at"]

    # The same id again: the same ack, nothing changed, nothing pushed.
    again = change(a, "edit", "e1", conv, 1, body="something else")
    assert again == ack
    b.assert_quiet()
    assert api.all_messages(bob.token, conv)[0]["body"] == "hello, edited"


def test_a_delete_clears_the_body_everywhere(
    api: ApiClient, users: Users, sockets: Sockets
) -> None:
    _alice, bob, a, a2, b, sent = one_message(users, sockets)
    conv = sent["conversation_id"]
    ack = change(a, "delete", "d1", conv, 1)
    assert (ack["type"], ack["seq"], ack["msg_id"]) == ("ack", 1, sent["msg_id"])
    for conn in (a, a2, b):
        update = conn.recv_type("update")
        assert (update["kind"], update["message"]["deleted"], update["message"]["body"]) == (
            "deleted",
            True,
            None,
        )
    (m,) = api.all_messages(bob.token, conv)
    assert (m["body"], m["deleted"]) == (None, True)
    assert change(a, "delete", "d1", conv, 1) == ack
    # Gone: no edit, reaction or second delete finds it.
    assert error_code(change(a, "edit", "e9", conv, 1, body="x"), "e9") == "not_found"
    assert error_code(change(b, "react", "r9", conv, 1, emoji="👍", on=True), "r9") == "not_found"
    assert error_code(change(a, "delete", "d2", conv, 1), "d2") == "not_found"


def test_reactions_toggle_and_show_in_history(
    api: ApiClient, users: Users, sockets: Sockets
) -> None:
    alice, bob, a, a2, b, sent = one_message(users, sockets)
    conv = sent["conversation_id"]
    assert change(b, "react", "r1", conv, 1, emoji="👍", on=True)["type"] == "ack"
    for conn in (a, a2, b):
        update = conn.recv_type("update")
        assert (update["kind"], update["by"]) == ("reaction", bob.user_id)
        assert update["message"]["reactions"] == {"👍": [bob.user_id]}
    assert change(a, "react", "r2", conv, 1, emoji="👍", on=True)["type"] == "ack"
    assert b.recv_type("update")["message"]["reactions"] == {
        "👍": sorted([alice.user_id, bob.user_id])
    }
    assert change(b, "react", "r3", conv, 1, emoji="👍", on=False)["type"] == "ack"
    assert b.recv_type("update")["message"]["reactions"] == {"👍": [alice.user_id]}
    assert api.all_messages(bob.token, conv)[0]["reactions"] == {"👍": [alice.user_id]}
    # The same id again changes nothing: the reaction stays off.
    assert change(b, "react", "r1", conv, 1, emoji="👍", on=True)["type"] == "ack"
    assert api.all_messages(bob.token, conv)[0]["reactions"] == {"👍": [alice.user_id]}


def test_at_most_20_distinct_emojis(api: ApiClient, users: Users, sockets: Sockets) -> None:
    _alice, bob, a, _a2, b, sent = one_message(users, sockets)
    conv = sent["conversation_id"]
    for i in range(20):
        assert change(b, "react", f"r{i}", conv, 1, emoji=f"e{i}", on=True)["type"] == "ack"
    assert (
        error_code(change(b, "react", "r20", conv, 1, emoji="e20", on=True), "r20") == "bad_request"
    )
    # One already there is still fine, from anyone.
    assert change(a, "react", "ra", conv, 1, emoji="e0", on=True)["type"] == "ack"
    assert len(api.all_messages(bob.token, conv)[0]["reactions"]) == 20


def test_the_errors(users: Users, sockets: Sockets) -> None:
    _alice, _bob, a, _a2, b, sent = one_message(users, sockets)
    conv = sent["conversation_id"]
    (carol,) = users(1)
    c = sockets.raw(carol)
    assert error_code(change(b, "edit", "x1", conv, 1, body="mine now"), "x1") == "forbidden"
    assert error_code(change(b, "delete", "x2", conv, 1), "x2") == "forbidden"
    assert error_code(change(a, "edit", "x3", conv, 2, body="no such"), "x3") == "not_found"
    assert error_code(change(a, "edit", "x4", "d:no:body", 1, body="x"), "x4") == "not_found"
    assert error_code(change(c, "edit", "x5", conv, 1, body="x"), "x5") == "not_found"
    assert error_code(change(c, "delete", "x6", conv, 1), "x6") == "not_found"
    assert error_code(change(c, "react", "x7", conv, 1, emoji="👍", on=True), "x7") == "forbidden"
    for bad in (
        {"body": ""},
        {"body": "x" * 4001},
        {"body": "x", "extra": 1},
    ):
        assert error_code(change(a, "edit", "b1", conv, 1, **bad), "b1") == "bad_request"
    assert error_code(change(a, "edit", "b2", conv, 0, body="x"), "b2") == "bad_request"
    for emoji, on in (("", True), ("x" * 17, True), ("👍", 1), ("👍", "true")):
        assert (
            error_code(change(a, "react", "b3", conv, 1, emoji=emoji, on=on), "b3") == "bad_request"
        )
    b.assert_quiet()
    a.ping()


def test_group_owner_and_admin_delete_any_message_members_do_not(
    api: ApiClient, users: Users, sockets: Sockets
) -> None:
    owner, admin, member, other = users(4)
    group = api.create_group(owner.token, "moderated", [member.user_id, other.user_id])
    gid = group["group_id"]
    api.add_member(owner.token, gid, admin.user_id, role="admin")
    o, ad, m, ot = (sockets.raw(u) for u in (owner, admin, member, other))
    conv = send(m, "g1", "one", group=gid)["conversation_id"]
    send(m, "g2", "two", group=gid)
    for conn in (o, ad, ot):
        assert [conn.recv_type("msg")["seq"] for _ in range(2)] == [1, 2]
    assert error_code(change(ot, "delete", "x", conv, 1), "x") == "forbidden"
    assert error_code(change(o, "edit", "y", conv, 1, body="owner's words"), "y") == "forbidden"
    assert change(o, "delete", "d1", conv, 1)["type"] == "ack"
    assert change(ad, "delete", "d2", conv, 2)["type"] == "ack"
    kinds = [(u["seq"], u["by"]) for u in (ot.recv_type("update") for _ in range(2))]
    assert kinds == [(1, owner.user_id), (2, admin.user_id)]
    assert [m["deleted"] for m in api.all_messages(other.token, conv)] == [True, True]


def test_an_edit_right_after_its_message_never_overtakes_it(users: Users, sockets: Sockets) -> None:
    alice, bob = users(2)
    a, b = sockets.raw(alice), sockets.raw(bob)
    for i in range(1, 21):
        ack = send(a, f"m{i}", f"body {i}", to=bob.user_id)
        assert (
            change(a, "edit", f"e{i}", ack["conversation_id"], ack["seq"], body=f"edited {i}")[
                "type"
            ]
            == "ack"
        )
    seen: set[int] = set()
    for _ in range(40):
        frame = b.recv()
        if frame["type"] == "msg":
            seen.add(frame["seq"])
        else:
            assert frame["type"] == "update" and frame["seq"] in seen, frame


@pytest.fixture
def short_window(tmp_path: Path) -> Iterator[str]:
    for server in run_server(tmp_path, env={"IMCHAT_EDIT_WINDOW_SECONDS": "1"}):
        yield server.base_url


def test_the_edit_window(short_window: str) -> None:
    alice, bob = register_users(short_window, 2)
    opened = Sockets(short_window)
    try:
        a = opened.raw(alice)
        conv = send(a, "m1", "quick", to=bob.user_id)["conversation_id"]
        send(a, "m2", "quick too", to=bob.user_id)
        assert change(a, "edit", "e1", conv, 1, body="in time")["type"] == "ack"
        assert a.recv_type("update")["seq"] == 1
        time.sleep(1.5)
        assert error_code(change(a, "edit", "e2", conv, 1, body="too late"), "e2") == "forbidden"
        assert error_code(change(a, "delete", "d1", conv, 2), "d1") == "forbidden"
        # Reactions know no window.
        assert change(a, "react", "r1", conv, 1, emoji="👍", on=True)["type"] == "ack"
    finally:
        opened.close_all()
