"""GET /api/v1/conversations/{id}/messages: pages, cursors, visibility, M's fields.

On the embedded default (unit) and on MariaDB + Redis (integration); the
messages go through the delivery service (tests/api/history_support.py).
"""

from __future__ import annotations

from typing import Any

import pytest

from .history_support import Chat, direct_id, group_id_of
from .support import ApiClient, User, assert_error


def page(api: ApiClient, user: User, conversation: str, query: str = "") -> dict[str, Any]:
    response = api.call("GET", f"/conversations/{conversation}/messages{query}", user)
    assert response.status_code == 200, response.json
    body: dict[str, Any] = response.json  # type: ignore[assignment]
    assert set(body) >= {"messages", "has_more"}
    return body


def seqs(body: dict[str, Any]) -> tuple[list[int], bool]:
    return [m["seq"] for m in body["messages"]], body["has_more"]


@pytest.fixture
def ten(api: ApiClient) -> tuple[User, User, str]:
    """alice and bob with ten direct messages, seqs 1 to 10, both ways."""
    alice, bob = api.user("alice"), api.user("bob")
    chat = Chat(api)
    chat.deliver(
        *(
            chat.envelope(alice if n % 2 else bob, f"m{n}", to=bob if n % 2 else alice)
            for n in range(1, 11)
        )
    )
    return alice, bob, direct_id(alice, bob)


def test_the_newest_limit_ascending_without_a_bound(
    api: ApiClient, ten: tuple[User, User, str]
) -> None:
    alice, bob, conversation = ten
    assert seqs(page(api, alice, conversation, "?limit=3")) == ([8, 9, 10], True)
    body = page(api, bob, conversation)  # default 50
    assert seqs(body) == (list(range(1, 11)), False)
    assert [m["body"] for m in body["messages"]] == [f"m{n}" for n in range(1, 11)]
    assert seqs(page(api, alice, conversation, "?limit=10")) == (list(range(1, 11)), False)
    assert seqs(page(api, alice, conversation, "?limit=9")) == (list(range(2, 11)), True)


def test_before_seq_pages_backwards(api: ApiClient, ten: tuple[User, User, str]) -> None:
    alice, _, conversation = ten
    assert seqs(page(api, alice, conversation, "?before_seq=8&limit=3")) == ([5, 6, 7], True)
    assert seqs(page(api, alice, conversation, "?before_seq=5&limit=4")) == ([1, 2, 3, 4], False)
    assert seqs(page(api, alice, conversation, "?before_seq=3&limit=5")) == ([1, 2], False)
    assert seqs(page(api, alice, conversation, "?before_seq=1")) == ([], False)
    assert seqs(page(api, alice, conversation, "?before_seq=500&limit=2")) == ([9, 10], True)
    # Scrolling up from the newest page to the first one: every message once, in order.
    seen: list[int] = []
    body = page(api, alice, conversation, "?limit=3")
    while True:
        got, more = seqs(body)
        seen = got + seen
        if not more:
            break
        body = page(api, alice, conversation, f"?limit=3&before_seq={got[0]}")
    assert seen == list(range(1, 11))


def test_after_seq_pages_forwards(api: ApiClient, ten: tuple[User, User, str]) -> None:
    _, bob, conversation = ten
    assert seqs(page(api, bob, conversation, "?after_seq=0&limit=4")) == ([1, 2, 3, 4], True)
    assert seqs(page(api, bob, conversation, "?after_seq=7&limit=2")) == ([8, 9], True)
    assert seqs(page(api, bob, conversation, "?after_seq=7&limit=3")) == ([8, 9, 10], False)
    assert seqs(page(api, bob, conversation, "?after_seq=8&limit=5")) == ([9, 10], False)
    assert seqs(page(api, bob, conversation, "?after_seq=10")) == ([], False)
    # A device catching up from its last seq: every message once, in order.
    seen: list[int] = []
    cursor, more = 0, True
    while more:
        got, more = seqs(page(api, bob, conversation, f"?after_seq={cursor}&limit=4"))
        seen += got
        cursor = got[-1] if got else cursor
    assert seen == list(range(1, 11))


@pytest.mark.parametrize(
    "query",
    [
        "?before_seq=5&after_seq=2",
        "?before_seq=0",
        "?before_seq=-1",
        "?after_seq=-1",
        "?before_seq=abc",
        "?after_seq=1.5",
        "?after_seq=",
        "?before_seq=99999999999999999999999",
        "?limit=0",
        "?limit=101",
        "?limit=-5",
        "?limit=ten",
        "?limit=99999999999999999999999",
        "?seq=3",
    ],
)
def test_bad_parameters_are_400(api: ApiClient, ten: tuple[User, User, str], query: str) -> None:
    alice, _, conversation = ten
    response = api.call("GET", f"/conversations/{conversation}/messages{query}", alice)
    assert assert_error(response, 400)["code"] == "bad_request"


def test_limits_1_and_100_are_allowed(api: ApiClient, ten: tuple[User, User, str]) -> None:
    alice, _, conversation = ten
    assert seqs(page(api, alice, conversation, "?limit=1")) == ([10], True)
    assert seqs(page(api, alice, conversation, "?limit=100")) == (list(range(1, 11)), False)


def test_a_message_has_the_fields_of_the_contract(api: ApiClient) -> None:
    alice, bob = api.user("alice"), api.user("bob")
    chat = Chat(api)
    first = chat.send(alice, "hi bob", to=bob)
    reply = chat.send(bob, "hi alice", to=alice, reply_to=1)
    group = api.group(alice, bob)
    in_group = chat.send(bob, "hi all", group=group)

    plain = {"edited_at": None, "deleted": False, "reactions": {}}
    direct = page(api, bob, direct_id(alice, bob))["messages"]
    assert direct == [
        {
            "msg_id": first.msg_id,
            "conversation_id": direct_id(alice, bob),
            "seq": 1,
            "from": alice.user_id,
            "to": bob.user_id,
            "body": "hi bob",
            "ts": first.ts,
            "reply_to": None,
            **plain,
        },
        {
            "msg_id": reply.msg_id,
            "conversation_id": direct_id(alice, bob),
            "seq": 2,
            "from": bob.user_id,
            "to": alice.user_id,
            "body": "hi alice",
            "ts": reply.ts,
            "reply_to": 1,
            **plain,
        },
    ]
    assert page(api, alice, group_id_of(group))["messages"] == [
        {
            "msg_id": in_group.msg_id,
            "conversation_id": group_id_of(group),
            "seq": 1,
            "from": bob.user_id,
            "group": group,
            "body": "hi all",
            "ts": in_group.ts,
            "reply_to": None,
            **plain,
        }
    ]


def test_both_users_of_a_direct_conversation_read_it_and_nobody_else(
    api: ApiClient, ten: tuple[User, User, str]
) -> None:
    alice, bob, conversation = ten
    carol = api.user("carol")
    assert page(api, alice, conversation) == page(api, bob, conversation)
    assert_error(api.call("GET", f"/conversations/{conversation}/messages", carol), 403)
    assert_error(api.call("GET", f"/conversations/{conversation}/messages"), 401)
    for unknown in ("g:nosuchgroup", direct_id(alice, carol), "nothing"):
        error = assert_error(api.call("GET", f"/conversations/{unknown}/messages", alice), 404)
        assert error["code"] == "not_found"


def test_a_member_reads_from_the_seq_at_which_they_joined(api: ApiClient) -> None:
    alice, bob, carol = api.user("alice"), api.user("bob"), api.user("carol")
    chat = Chat(api)
    group = api.group(alice, bob)
    conversation = group_id_of(group)
    assert seqs(page(api, bob, conversation)) == ([], False)  # a group without messages
    for n in range(3):
        chat.send(alice, f"before carol {n}", group=group)
    assert_error(api.call("GET", f"/conversations/{conversation}/messages", carol), 403)

    added = api.call("POST", f"/groups/{group}/members", alice, json={"user_id": carol.user_id})
    assert added.status_code == 201, added.json
    assert seqs(page(api, carol, conversation)) == ([], False)
    chat.send(bob, "welcome", group=group)
    chat.send(carol, "thanks", group=group)

    assert seqs(page(api, carol, conversation)) == ([4, 5], False)
    assert seqs(page(api, carol, conversation, "?limit=1")) == ([5], True)
    assert seqs(page(api, carol, conversation, "?before_seq=5")) == ([4], False)
    assert seqs(page(api, carol, conversation, "?before_seq=4")) == ([], False)
    assert seqs(page(api, carol, conversation, "?after_seq=0")) == ([4, 5], False)
    assert seqs(page(api, bob, conversation)) == ([1, 2, 3, 4, 5], False)


def test_a_former_member_gets_403_and_a_re_added_one_reads_from_the_re_join_on(
    api: ApiClient,
) -> None:
    alice, bob = api.user("alice"), api.user("bob")
    chat = Chat(api)
    group = api.group(alice, bob)
    conversation = group_id_of(group)
    chat.send(alice, "one", group=group)
    chat.send(bob, "two", group=group)
    left = api.call("DELETE", f"/groups/{group}/members/{bob.user_id}", bob)
    assert left.status_code == 204
    chat.send(alice, "while bob is away", group=group)
    for query in ("", "?after_seq=0", "?before_seq=2"):
        assert_error(api.call("GET", f"/conversations/{conversation}/messages{query}", bob), 403)

    added = api.call("POST", f"/groups/{group}/members", alice, json={"user_id": bob.user_id})
    assert added.status_code == 201, added.json
    chat.send(alice, "welcome back", group=group)
    assert seqs(page(api, bob, conversation)) == ([4], False)
    assert seqs(page(api, bob, conversation, "?before_seq=4")) == ([], False)
    assert seqs(page(api, bob, conversation, "?after_seq=0")) == ([4], False)
    assert seqs(page(api, alice, conversation)) == ([1, 2, 3, 4], False)
    [conv] = [c for c in _listing(api, bob) if c["conversation_id"] == conversation]
    assert (conv["unread"], conv["last_message"]["seq"]) == (1, 4)


def _listing(api: ApiClient, user: User) -> list[dict[str, Any]]:
    response = api.call("GET", "/conversations", user)
    assert response.status_code == 200, response.json
    return response.json["conversations"]  # type: ignore[no-any-return, index]
