"""GET /api/v1/conversations and GET /api/v1/conversations/{id}.

Every test runs on the embedded default (unit) and on MariaDB + Redis
(integration) through the ``api`` fixture; messages go through the delivery
service (tests/api/history_support.py).
"""

from __future__ import annotations

import base64
from typing import Any

import pytest

from .history_support import Chat, counting_statements, direct_id, group_id_of, now_ms
from .support import ApiClient, User, assert_error


def listing(api: ApiClient, user: User, query: str = "") -> dict[str, Any]:
    response = api.call("GET", f"/conversations{query}", user)
    assert response.status_code == 200, response.json
    body: dict[str, Any] = response.json  # type: ignore[assignment]
    assert set(body) >= {"conversations", "next"}
    return body


def ids(api: ApiClient, user: User, query: str = "") -> list[str]:
    return [c["conversation_id"] for c in listing(api, user, query)["conversations"]]


def every_page(api: ApiClient, user: User, limit: int) -> list[list[str]]:
    """The conversation ids of each page, following ``next`` to the end."""
    pages: list[list[str]] = []
    cursor: str | None = None
    while True:
        query = f"?limit={limit}" + (f"&before={cursor}" if cursor else "")
        body = listing(api, user, query)
        pages.append([c["conversation_id"] for c in body["conversations"]])
        assert len(pages[-1]) <= limit
        cursor = body["next"]
        if cursor is None:
            return pages
        assert len(pages) < 100, "the cursor never ends"


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


# ------------------------------------------------------------- the list
def test_most_recent_activity_comes_first(api: ApiClient) -> None:
    alice, bob, carol = api.user("alice"), api.user("bob"), api.user("carol")
    chat = Chat(api)
    group = api.group(alice, bob, carol)
    later = now_ms() + 60_000  # after the group's creation
    chat.send(alice, to=bob, ts=later)
    chat.send(carol, to=alice, ts=later + 2)
    chat.send(bob, group=group, ts=later + 1)

    assert ids(api, alice) == [direct_id(alice, carol), group_id_of(group), direct_id(alice, bob)]
    chat.send(bob, to=alice, ts=later + 3)  # bob's direct conversation moves to the top
    assert ids(api, alice) == [direct_id(alice, bob), direct_id(alice, carol), group_id_of(group)]
    assert ids(api, bob) == [direct_id(alice, bob), group_id_of(group)]


def test_a_group_is_listed_before_its_first_message(api: ApiClient) -> None:
    alice, bob = api.user("alice"), api.user("bob")
    group = api.group(alice, bob, name="quiet")
    for user in (alice, bob):
        [conv] = listing(api, user)["conversations"]
        assert conv["conversation_id"] == group_id_of(group)
        assert (conv["kind"], conv["group_id"], conv["name"]) == ("group", group, "quiet")
        assert "peer_id" not in conv
        assert (conv["last_seq"], conv["last_message"], conv["unread"]) == (0, None, 0)
        assert (conv["delivered_seq"], conv["read_seq"]) == (0, 0)


def test_a_direct_conversation_is_listed_from_its_first_message(api: ApiClient) -> None:
    alice, bob = api.user("alice"), api.user("bob")
    conversation = direct_id(alice, bob)
    assert listing(api, alice) == {"conversations": [], "next": None}
    for user in (alice, bob):
        assert_error(api.call("GET", f"/conversations/{conversation}", user), 404)

    envelope = Chat(api).send(alice, "first", to=bob)
    for user, peer in ((alice, bob), (bob, alice)):
        [conv] = listing(api, user)["conversations"]
        assert (conv["conversation_id"], conv["kind"]) == (conversation, "direct")
        assert conv["peer_id"] == peer.user_id and "group_id" not in conv
        assert conv["last_seq"] == 1
        assert conv["last_message"]["msg_id"] == envelope.msg_id


def test_unread_counts_the_others_messages_above_the_read_mark(api: ApiClient) -> None:
    alice, bob = api.user("alice"), api.user("bob")
    chat, conversation = Chat(api), direct_id(alice, bob)
    for n in range(3):
        chat.send(alice, f"a{n}", to=bob)
    chat.send(bob, "b0", to=alice)  # seq 4

    def conv_of(user: User) -> dict[str, Any]:
        [conv] = listing(api, user)["conversations"]
        return conv

    assert (conv_of(bob)["unread"], conv_of(alice)["unread"]) == (3, 1)
    chat.mark(bob, conversation, read=2)
    mine = conv_of(bob)
    assert (mine["unread"], mine["read_seq"], mine["delivered_seq"]) == (1, 2, 2)
    chat.mark(bob, conversation, delivered=4)  # delivered alone clears nothing
    mine = conv_of(bob)
    assert (mine["unread"], mine["read_seq"], mine["delivered_seq"]) == (1, 2, 4)
    chat.mark(bob, conversation, read=1)  # marks never move back
    assert (conv_of(bob)["read_seq"], conv_of(bob)["delivered_seq"]) == (2, 4)
    chat.mark(bob, conversation, read=4)
    assert conv_of(bob)["unread"] == 0
    assert (conv_of(alice)["unread"], conv_of(alice)["read_seq"]) == (1, 0)


def test_unread_in_a_group_counts_only_the_members_own_window(api: ApiClient) -> None:
    alice, bob, carol = api.user("alice"), api.user("bob"), api.user("carol")
    chat = Chat(api)
    group = api.group(alice, bob)
    for n in range(3):
        chat.send(alice, f"before {n}", group=group)
    added = api.call("POST", f"/groups/{group}/members", alice, json={"user_id": carol.user_id})
    assert added.status_code == 201, added.json
    [joined] = listing(api, carol)["conversations"]
    assert (joined["unread"], joined["last_message"]) == (0, None)
    assert (joined["delivered_seq"], joined["read_seq"]) == (3, 3)  # from the join on
    chat.send(bob, "after", group=group)
    [conv] = listing(api, carol)["conversations"]
    assert (conv["unread"], conv["last_seq"], conv["last_message"]["body"]) == (1, 4, "after")
    assert listing(api, bob)["conversations"][0]["unread"] == 3


def test_last_message_is_the_newest(api: ApiClient) -> None:
    alice, bob = api.user("alice"), api.user("bob")
    chat = Chat(api)
    chat.deliver(*(chat.envelope(alice, f"m{n}", to=bob) for n in range(4)))
    newest = chat.send(bob, "newest", to=alice, reply_to=2)
    [conv] = listing(api, alice)["conversations"]
    last = conv["last_message"]
    assert conv["last_seq"] == 5
    assert last == {
        "msg_id": newest.msg_id,
        "conversation_id": direct_id(alice, bob),
        "seq": 5,
        "from": bob.user_id,
        "to": alice.user_id,
        "body": "newest",
        "ts": newest.ts,
        "reply_to": 2,
        "edited_at": None,
        "deleted": False,
        "reactions": {},
    }


def test_a_former_member_no_longer_lists_the_group(api: ApiClient) -> None:
    alice, bob = api.user("alice"), api.user("bob")
    group = api.group(alice, bob)
    Chat(api).send(alice, group=group)
    assert ids(api, bob) == [group_id_of(group)]
    assert api.call("DELETE", f"/groups/{group}/members/{bob.user_id}", bob).status_code == 204
    assert ids(api, bob) == []
    assert ids(api, alice) == [group_id_of(group)]


# ------------------------------------------------------- limit and cursor
def test_limit_defaults_to_50_and_is_bounded(api: ApiClient) -> None:
    alice = api.user("alice")
    chat = Chat(api)
    peers = chat.plain_users(51)
    chat.deliver(*(chat.envelope(alice, to=peer) for peer in peers))

    body = listing(api, alice)
    assert len(body["conversations"]) == 50 and body["next"] is not None
    assert len(listing(api, alice, "?limit=100")["conversations"]) == 51
    assert len(listing(api, alice, "?limit=1")["conversations"]) == 1
    assert listing(api, alice, "?limit=51")["next"] is None
    for bad in ("0", "101", "-1", "abc", "1.5", "", "99999999999999999999"):
        assert_error(api.call("GET", f"/conversations?limit={bad}", alice), 400)


def test_the_cursor_pages_through_everything_once_when_times_tie(api: ApiClient) -> None:
    alice = api.user("alice")
    chat = Chat(api)
    peers = chat.plain_users(9)
    tie = now_ms() + 60_000
    # Seven conversations active in the same millisecond, one before, one after.
    batch = [chat.envelope(alice, to=peer, ts=tie) for peer in peers[:7]]
    batch += [chat.envelope(peers[7], to=alice, ts=tie - 1)]
    batch += [chat.envelope(peers[8], to=alice, ts=tie + 1)]
    chat.deliver(*batch)
    groups = [api.group(alice, name=f"g{n}") for n in range(2)]  # active now, before the tie

    everything = ids(api, alice, "?limit=100")
    assert len(everything) == 11 and len(set(everything)) == 11
    assert everything[0] == direct_id(alice, peers[8])
    assert everything[8] == direct_id(alice, peers[7])
    tied = [direct_id(alice, peer) for peer in peers[:7]]
    assert everything[1:8] == sorted(tied, reverse=True)  # ties: by conversation id
    assert set(everything[9:]) == {group_id_of(g) for g in groups}
    for limit in (1, 2, 3, 4, 10, 11):
        pages = every_page(api, alice, limit)
        assert [c for page in pages for c in page] == everything, limit
        assert all(len(page) == limit for page in pages[:-1])


def test_the_cursor_sees_a_conversation_that_moves_up_only_on_a_new_listing(
    api: ApiClient,
) -> None:
    """A page after the cursor lists what lies below it: a conversation that
    became active meanwhile is on a fresh first page, not twice."""
    alice = api.user("alice")
    chat = Chat(api)
    peers = chat.plain_users(4)
    start = now_ms() + 60_000
    chat.deliver(*(chat.envelope(alice, to=p, ts=start + n) for n, p in enumerate(peers)))
    first = listing(api, alice, "?limit=2")
    assert [c["peer_id"] for c in first["conversations"]] == [peers[3], peers[2]]
    chat.send(peers[0], to=alice, ts=start + 10)
    rest = listing(api, alice, f"?limit=2&before={first['next']}")
    assert [c["peer_id"] for c in rest["conversations"]] == [peers[1]]
    assert rest["next"] is None
    assert ids(api, alice, "?limit=1") == [direct_id(alice, peers[0])]


@pytest.mark.parametrize(
    "cursor",
    [
        "!!!",
        "%20",
        "x" * 201,
        b64(b"no colon here"),
        b64(b"notanumber:d:a:b"),
        b64(b"\xff\xfe:zz"),
        b64(b"12.5:d:a:b"),
        b64(b"99999999999999999999999999:d:a:b"),
        b64(b"-99999999999999999999999999:d:a:b"),
    ],
)
def test_a_garbled_cursor_is_400(api: ApiClient, cursor: str) -> None:
    alice, bob = api.user("alice"), api.user("bob")
    Chat(api).send(alice, to=bob)
    error = assert_error(api.call("GET", f"/conversations?before={cursor}", alice), 400)
    assert error["code"] == "bad_request"


def test_unknown_query_parameters_and_no_token(api: ApiClient) -> None:
    alice = api.user("alice")
    assert_error(api.call("GET", "/conversations?page=2", alice), 400)
    assert_error(api.call("GET", "/conversations"), 401)
    assert_error(api.call("GET", "/conversations/g:x"), 401)


# ------------------------------------------------------ one query per page
def test_the_list_is_one_query_per_page_whatever_the_number_of_conversations(
    api: ApiClient,
) -> None:
    chat = Chat(api)

    def statements_for(count: int) -> list[str]:
        user = api.user("counted")
        peers = chat.plain_users(count)
        half = count // 2
        chat.deliver(*(chat.envelope(user, to=p) for p in peers[:half]))
        chat.deliver(*(chat.envelope(p, to=user) for p in peers[half:]))
        for n in range(2):  # and groups, one of them silent
            group = api.group(user, name=f"g{n}")
            if n:
                chat.send(user, group=group)
        with counting_statements(api) as seen:
            body = listing(api, user)
        assert len(body["conversations"]) == count + 2
        silent = [c for c in body["conversations"] if c["last_message"] is None]
        assert len(silent) == 1
        return seen

    few, many = statements_for(3), statements_for(30)
    assert len(few) == len(many), (few, many)
    # The token's user is looked up; the page itself is one statement.
    assert len(many) <= 2, many
    assert len([s for s in many if "conversation_members" in s]) == 1, many


# ------------------------------------------------------ one conversation
def test_one_conversation_to_its_participants(api: ApiClient) -> None:
    alice, bob = api.user("alice"), api.user("bob")
    chat = Chat(api)
    chat.send(alice, "hi", to=bob)
    group = api.group(alice, bob, name="pair")
    chat.send(bob, "all", group=group)
    for conversation in (direct_id(alice, bob), group_id_of(group)):
        for user in (alice, bob):
            response = api.call("GET", f"/conversations/{conversation}", user)
            assert response.status_code == 200, response.json
            listed = {c["conversation_id"]: c for c in listing(api, user)["conversations"]}
            assert response.json == listed[conversation]


def test_one_conversation_is_403_for_others_and_former_members_and_404_unknown(
    api: ApiClient,
) -> None:
    alice, bob, carol = api.user("alice"), api.user("bob"), api.user("carol")
    chat = Chat(api)
    chat.send(alice, to=bob)
    group = api.group(alice, bob)
    silent = api.group(alice, name="silent")
    assert_error(api.call("GET", f"/conversations/{direct_id(alice, bob)}", carol), 403)
    assert_error(api.call("GET", f"/conversations/{group_id_of(group)}", carol), 403)
    assert_error(api.call("GET", f"/conversations/{group_id_of(silent)}", bob), 403)

    assert api.call("DELETE", f"/groups/{group}/members/{bob.user_id}", bob).status_code == 204
    assert_error(api.call("GET", f"/conversations/{group_id_of(group)}", bob), 403)

    for unknown in ("g:nosuchgroup", direct_id(alice, carol), "nothing", "d:" + "x" * 300):
        error = assert_error(api.call("GET", f"/conversations/{unknown}", alice), 404)
        assert error["code"] == "not_found"
