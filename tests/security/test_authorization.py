"""Authorization on every group endpoint and frame, against the running server.

Each refusal is checked together with what it protects: after the refused
calls the group is exactly as it was, and after a refused or foreign
``delivered`` the other user's pending messages are still pushed to them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from imchat.client import ApiClient, Session
from tests.support.clients import assert_error_shape, bearer, http_call, register_users
from tests.support.server import EmbeddedServer
from tests.support.sockets import RawSocket, Sockets

pytestmark = pytest.mark.e2e


def call(server: EmbeddedServer, user: Session, method: str, path: str, body: Any = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json", **bearer(user.token)}
    return http_call(server.base_url, method, "/api/v1" + path, data, headers)


def members_of(server: EmbeddedServer, owner: Session, group_id: str) -> list[tuple[str, str]]:
    answer = call(server, owner, "GET", f"/groups/{group_id}/members")
    assert answer.status == 200, answer
    return sorted((m["user_id"], m["role"]) for m in answer.json())


@pytest.fixture
def group(embedded_server: EmbeddedServer) -> tuple[str, dict[str, Session]]:
    """A group of owner, admin and member, plus an outsider and a bystander."""
    owner, admin, member, outsider, bystander = register_users(embedded_server.base_url, 5)
    api = ApiClient(embedded_server.base_url)
    group_id = api.create_group(owner.token, "private", [admin.user_id, member.user_id])["group_id"]
    api.call(
        "PATCH",
        f"/api/v1/groups/{group_id}/members/{admin.user_id}",
        {"role": "admin"},
        owner.token,
    )
    cast = {
        "owner": owner,
        "admin": admin,
        "member": member,
        "outsider": outsider,
        "bystander": bystander,
    }
    return group_id, cast


def refused_calls(cast: dict[str, Session]) -> list[tuple[str, str, str, Any]]:
    """(who, method, path under the group, body) that the contract refuses with 403."""
    owner, admin, member = cast["owner"], cast["admin"], cast["member"]
    bystander = cast["bystander"]
    return [
        # An outsider may do nothing at all with the group.
        ("outsider", "GET", "", None),
        ("outsider", "GET", "/members", None),
        ("outsider", "POST", "/members", {"user_id": cast["outsider"].user_id}),
        ("outsider", "POST", "/members", {"user_id": bystander.user_id}),
        ("outsider", "PATCH", f"/members/{member.user_id}", {"role": "admin"}),
        ("outsider", "PATCH", f"/members/{owner.user_id}", {"role": "member"}),
        ("outsider", "DELETE", f"/members/{member.user_id}", None),
        ("outsider", "DELETE", f"/members/{owner.user_id}", None),
        # A plain member may read and leave, nothing else.
        ("member", "POST", "/members", {"user_id": bystander.user_id}),
        ("member", "PATCH", f"/members/{member.user_id}", {"role": "owner"}),
        ("member", "PATCH", f"/members/{admin.user_id}", {"role": "member"}),
        ("member", "DELETE", f"/members/{admin.user_id}", None),
        ("member", "DELETE", f"/members/{owner.user_id}", None),
        # An admin adds plain members and removes plain members only.
        ("admin", "POST", "/members", {"user_id": bystander.user_id, "role": "admin"}),
        ("admin", "PATCH", f"/members/{member.user_id}", {"role": "admin"}),
        ("admin", "PATCH", f"/members/{admin.user_id}", {"role": "owner"}),
        ("admin", "DELETE", f"/members/{owner.user_id}", None),
    ]


def test_every_group_endpoint_refuses_who_may_not_with_403(
    embedded_server: EmbeddedServer, group: tuple[str, dict[str, Session]]
) -> None:
    group_id, cast = group
    before = members_of(embedded_server, cast["owner"], group_id)
    assert len(before) == 3
    for who, method, path, body in refused_calls(cast):
        answer = call(embedded_server, cast[who], method, f"/groups/{group_id}{path}", body)
        error = assert_error_shape(answer)
        assert (answer.status, error["code"]) == (403, "forbidden"), (who, method, path, answer)
    assert members_of(embedded_server, cast["owner"], group_id) == before
    embedded_server.assert_no_traceback()


def test_the_allowed_calls_succeed(
    embedded_server: EmbeddedServer, group: tuple[str, dict[str, Session]]
) -> None:
    """The other side of the 403s: the same calls by whom the contract allows."""
    group_id, cast = group
    owner, admin, member = cast["owner"], cast["admin"], cast["member"]
    bystander = cast["bystander"]
    assert call(embedded_server, member, "GET", f"/groups/{group_id}").status == 200
    answer = call(
        embedded_server,
        admin,
        "POST",
        f"/groups/{group_id}/members",
        {"user_id": bystander.user_id},
    )
    assert answer.status == 201, answer
    answer = call(
        embedded_server, admin, "DELETE", f"/groups/{group_id}/members/{bystander.user_id}"
    )
    assert answer.status == 204, answer
    answer = call(
        embedded_server,
        owner,
        "PATCH",
        f"/groups/{group_id}/members/{member.user_id}",
        {"role": "admin"},
    )
    assert answer.status == 200, answer
    answer = call(embedded_server, member, "DELETE", f"/groups/{group_id}/members/{member.user_id}")
    assert answer.status == 204, answer  # leaving


def test_a_removed_member_loses_read_access(
    embedded_server: EmbeddedServer, group: tuple[str, dict[str, Session]]
) -> None:
    group_id, cast = group
    member = cast["member"]
    assert call(embedded_server, member, "GET", f"/groups/{group_id}").status == 200
    removed = call(
        embedded_server, cast["owner"], "DELETE", f"/groups/{group_id}/members/{member.user_id}"
    )
    assert removed.status == 204
    for path in ("", "/members"):
        answer = call(embedded_server, member, "GET", f"/groups/{group_id}{path}")
        assert answer.status == 403, answer


def test_public_profiles_leave_out_the_email(embedded_server: EmbeddedServer) -> None:
    alice, bob = register_users(embedded_server.base_url, 2)
    patched = call(embedded_server, alice, "PATCH", "/users/me", {"email": "alice@example.com"})
    assert patched.status == 200 and patched.json()["email"] == "alice@example.com"
    seen = call(embedded_server, bob, "GET", f"/users/{alice.user_id}")
    assert seen.status == 200
    assert "email" not in seen.json() and "created_at" not in seen.json()


# ------------------------------------------------------------------ frames
@pytest.fixture
def opened(embedded_server: EmbeddedServer) -> Iterator[Sockets]:
    sockets = Sockets(embedded_server.base_url)
    yield sockets
    sockets.close_all()


def test_a_non_member_sending_to_a_group_is_forbidden_and_nobody_gets_it(
    embedded_server: EmbeddedServer, group: tuple[str, dict[str, Session]], opened: Sockets
) -> None:
    group_id, cast = group
    at_member = opened.raw(cast["member"])
    intruder = opened.raw(cast["outsider"])
    intruder.send({"type": "send", "id": "sneak", "group": group_id, "body": "let me in"})
    error = intruder.recv_type("error")
    assert (error["code"], error["id"]) == ("forbidden", "sneak")
    intruder.ping()
    at_member.assert_quiet()
    # A member's send gets through, so the quiet above meant something.
    member = opened.raw(cast["admin"])
    member.send({"type": "send", "id": "legit", "group": group_id, "body": "hello"})
    assert member.recv_type("ack")["id"] == "legit"
    assert at_member.recv_type("msg")["body"] == "hello"


def test_a_removed_member_can_no_longer_send(
    embedded_server: EmbeddedServer, group: tuple[str, dict[str, Session]], opened: Sockets
) -> None:
    group_id, cast = group
    member = cast["member"]
    removed = call(
        embedded_server, cast["owner"], "DELETE", f"/groups/{group_id}/members/{member.user_id}"
    )
    assert removed.status == 204
    conn = opened.raw(member)
    conn.send({"type": "send", "id": "late", "group": group_id, "body": "still here?"})
    assert conn.recv_type("error")["code"] == "forbidden"


def _send_offline(
    server: EmbeddedServer, sender: Session, to: Session, count: int
) -> list[dict[str, Any]]:
    conn = RawSocket(server.base_url, sender.token)
    try:
        conn.recv_type("synced")
        acks = []
        for i in range(count):
            conn.send({"type": "send", "id": f"p{i}", "to": to.user_id, "body": f"pending {i}"})
            acks.append(conn.recv_type("ack"))
        return acks
    finally:
        conn.close()


def test_delivered_for_someone_elses_conversation_leaves_their_pending_alone(
    embedded_server: EmbeddedServer, opened: Sockets
) -> None:
    alice, bob, eve = register_users(embedded_server.base_url, 3)
    acks = _send_offline(embedded_server, alice, bob, 3)
    conversation = acks[0]["conversation_id"]
    # Eve, who is not in the conversation, and alice, who is (but has nothing
    # pending in it), both claim every message of it delivered.
    for user in (eve, alice):
        conn = opened.raw(user)
        for seq in (3, 10**6, 2**63 - 1):
            conn.send({"type": "delivered", "conversation_id": conversation, "seq": seq})
        conn.ping()  # frames are handled in order: the delivered ones are done
    at_bob = opened.raw(bob, synced=None)
    got = [at_bob.recv_type("msg") for _ in acks]
    assert at_bob.recv() == {"type": "synced", "count": 3}
    assert [m["msg_id"] for m in got] == [a["msg_id"] for a in acks]
    # And bob's own delivered does trim them: the check above could have failed.
    at_bob.send({"type": "delivered", "conversation_id": conversation, "seq": 3})
    at_bob.ping()
    again = opened.raw(bob, synced=None)
    assert again.recv() == {"type": "synced", "count": 0}
    embedded_server.assert_no_traceback()
