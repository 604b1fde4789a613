"""The scenarios of issue 12 (history stored once per conversation), each run on
the echo ceiling and on imchat like the others:

- ``conversations``: ``GET /api/v1/conversations?limit=50`` of a user with
  ``params.conversations`` direct conversations, p50/p99 (target p99 < 50 ms);
- ``history``: ``GET .../messages?limit=50`` on a conversation of
  ``params.history`` messages, the newest page and pages ``before_seq`` a
  random seq, p50/p99 (target p99 < 20 ms);
- ``biggroup``: a group of ``params.big_group`` members of whom
  ``params.big_online`` are online, one sender in a closed loop: deliveries/s,
  p99, and the history rows written per message (must be 1).

The conversations, the million messages and the group's offline members are
written straight into the server's database (executemany, chunks of 10,000),
not sent: sending a million messages would measure the send path for an hour.
The ceiling of the two GETs is the echo app's ``/page``, a JSON page of as
many made-up items under the same gunicorn command line; the GETs are made
one at a time on one keep-alive connection, so each figure is one request's
latency with nothing queued before it.
"""

from __future__ import annotations

import http.client
import json
import random
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

from sqlalchemy import Engine, func, insert, select, update

from benchmarks.loadgen import percentiles
from benchmarks.servers import Server, run_job

if TYPE_CHECKING:
    from benchmarks.scenarios import Params, Population

Result = dict[str, Any]
Row = dict[str, Any]
CHUNK = 10_000  # rows per executemany
WARMUP_REQUESTS = 20


# ------------------------------------------------------------------ the database
def engine(server: Server) -> Engine:
    """The server's own database (its SQLite file, or its MariaDB database)."""
    from imchat.config import load_settings
    from imchat.stores.db import make_engine

    return make_engine(load_settings(environ=server.stack.env))


def insert_chunks(db: Engine, table: Any, rows: Iterator[Row]) -> int:
    """Insert ``rows`` by executemany, CHUNK rows per transaction; how many."""
    count, chunk = 0, []
    for row in rows:
        chunk.append(row)
        if len(chunk) == CHUNK:
            with db.begin() as conn:
                conn.execute(insert(table), chunk)
            count, chunk = count + len(chunk), []
    if chunk:
        with db.begin() as conn:
            conn.execute(insert(table), chunk)
        count += len(chunk)
    return count


def fake_users(db: Engine, count: int) -> list[str]:
    """``count`` users that exist but never log in (their hash matches no password)."""
    from imchat.stores.models import User

    prefix, now = uuid.uuid4().hex[:8], datetime.now(UTC).replace(tzinfo=None)
    ids = [uuid.uuid4().hex for _ in range(count)]
    rows = (
        {"user_id": u, "username": f"s{prefix}_{i}", "password_hash": "!", "created_at": now,
         "updated_at": now}
        for i, u in enumerate(ids)
    )  # fmt: skip
    insert_chunks(db, User.__table__, rows)
    return ids


def message_row(conversation_id: str, seq: int, sender: str, to: str, ts: int) -> Row:
    return {
        "conversation_id": conversation_id, "seq": seq, "msg_id": uuid.uuid4().hex,
        "sender_id": sender, "client_id": f"seed-{seq}", "recipient_id": to, "group_id": None,
        "body": f"message {seq} of the benchmark history", "ts": ts, "reply_to": None,
        "edited_at": None, "deleted": False,
    }  # fmt: skip


def seed_direct(db: Engine, user: str, peer: str, messages: int, read_seq: int, ts: int) -> str:
    """A direct conversation of ``messages`` messages (alternate senders, ``ts``
    the newest one's time) with both users' marks: read up to ``read_seq``."""
    from imchat.stores.conversations import CONVERSATIONS, MEMBERS
    from imchat.stores.history import MESSAGES
    from imchat.stores.models import SequenceSnapshot
    from imchat.wire.ids import direct_conversation_id

    conversation = direct_conversation_id(user, peer)
    first_ts = ts - messages
    rows = (
        message_row(conversation, seq, *((peer, user) if seq % 2 else (user, peer)),
                    first_ts + seq)
        for seq in range(1, messages + 1)
    )  # fmt: skip
    insert_chunks(db, MESSAGES, rows)
    marks = {"joined_seq": 0, "delivered_seq": messages, "joined_ts": 0}
    with db.begin() as conn:
        conn.execute(insert(CONVERSATIONS), [{"conversation_id": conversation, "kind": "direct",
                     "group_id": None, "last_seq": messages, "last_ts": ts}])  # fmt: skip
        conn.execute(insert(MEMBERS), [
            {"user_id": user, "conversation_id": conversation, "peer_id": peer,
             "read_seq": read_seq, **marks},
            {"user_id": peer, "conversation_id": conversation, "peer_id": user,
             "read_seq": messages, **marks},
        ])  # fmt: skip
        # The durable seq ceiling, so that a send in it would continue above the seeded seqs.
        conn.execute(insert(SequenceSnapshot.__table__), [
            {"conversation_id": conversation, "sequence_number": messages}])  # fmt: skip
    return conversation


def seed_conversations(db: Engine, user: str, count: int, messages: int) -> None:
    """``count`` direct conversations of ``messages`` each, in big transactions."""
    from imchat.stores.conversations import CONVERSATIONS, MEMBERS
    from imchat.stores.history import MESSAGES
    from imchat.wire.ids import direct_conversation_id

    peers, now = fake_users(db, count), int(time.time() * 1000)
    read = messages // 2  # half of each conversation unread: the count has work to do
    ids = [direct_conversation_id(user, p) for p in peers]
    rows = (
        message_row(c, s, *((p, user) if s % 2 else (user, p)), now - 10 * i - messages + s)
        for i, (c, p) in enumerate(zip(ids, peers, strict=True))
        for s in range(1, messages + 1)
    )  # fmt: skip
    insert_chunks(db, MESSAGES, rows)
    conversations = (
        {"conversation_id": c, "kind": "direct", "group_id": None, "last_seq": messages,
         "last_ts": now - 10 * i}
        for i, c in enumerate(ids)
    )  # fmt: skip
    insert_chunks(db, CONVERSATIONS, conversations)
    marks = {"joined_seq": 0, "delivered_seq": messages, "joined_ts": 0}
    members = (
        row
        for c, p in zip(ids, peers, strict=True)
        for row in (
            {"user_id": user, "conversation_id": c, "peer_id": p, "read_seq": read, **marks},
            {"user_id": p, "conversation_id": c, "peer_id": user, "read_seq": messages, **marks},
        )
    )
    insert_chunks(db, MEMBERS, members)


def add_offline_members(db: Engine, group_id: str, count: int) -> None:
    """``count`` more members of the group, straight into the stores (the API
    creates a group with at most 1,000): users, group members, the conversation's."""
    from sqlalchemy.orm import Session

    from imchat.stores import conversations as conversation_store
    from imchat.stores.models import Group, GroupMember

    ids, now = fake_users(db, count), datetime.now(UTC).replace(tzinfo=None)
    rows = ({"group_id": group_id, "user_id": u, "role": "member", "joined_at": now} for u in ids)
    insert_chunks(db, GroupMember.__table__, rows)
    with Session(db) as session, session.begin():
        conversation_store.join_group(session, group_id, ids, int(time.time() * 1000))
        grown = Group.member_count + count
        session.execute(update(Group).where(Group.group_id == group_id).values(member_count=grown))


def cache_name(group_id: str) -> str:
    from imchat.backends.cache_redis import cache_key
    from imchat.services.groups import cache_key as group_key

    return cache_key(group_key(group_id))


def forget_cached_members(server: Server, group_id: str) -> None:
    """The members were added behind the service's back: drop any cached list.
    (The embedded cache lives in the server's process; nothing has read the
    list there yet, as only a send does.)"""
    if server.kind == "production":
        server.stack.redis().delete(cache_name(group_id))


def cached_members(server: Server, group_id: str) -> int | None:
    """How many members the messaging path's cached list holds (production)."""
    if server.kind != "production":
        return None
    cached = server.stack.redis().get(cache_name(group_id))
    return None if cached is None else len(json.loads(cached))


def row_counts(db: Engine, group_id: str) -> dict[str, int]:
    """History rows of the group, of every conversation, and members' rows."""
    from imchat.stores.conversations import MEMBERS, group_conversation
    from imchat.stores.history import MESSAGES

    mine = MESSAGES.c.conversation_id == group_conversation(group_id)
    with db.connect() as conn:
        return {
            "group_history": int(conn.scalar(select(func.count()).select_from(MESSAGES)
                                             .where(mine)) or 0),
            "all_history": int(conn.scalar(select(func.count()).select_from(MESSAGES)) or 0),
            "conversation_members": int(conn.scalar(select(func.count()).select_from(MEMBERS))
                                        or 0),
        }  # fmt: skip


# ------------------------------------------------------------------ HTTP timing
def timed_gets(
    base_url: str, token: str | None, paths: list[str], check: Callable[[Any, str], bool]
) -> Result:
    """GET each path in turn on one keep-alive connection: latency percentiles
    (the first WARMUP_REQUESTS not counted) and how many answers failed ``check``."""
    address = urlsplit(base_url)
    conn = http.client.HTTPConnection(address.hostname or "", address.port, timeout=60)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    latencies, errors, statuses = [], 0, set()
    try:
        for index, path in enumerate(paths):
            start = time.perf_counter_ns()
            conn.request("GET", path, headers=headers)
            answer = conn.getresponse()
            body = answer.read()
            took = time.perf_counter_ns() - start
            if index >= WARMUP_REQUESTS:
                latencies.append(took)
            statuses.add(answer.status)
            if answer.status != 200 or not check(json.loads(body), path):
                errors += 1
    finally:
        conn.close()
    return {"requests": len(latencies), "errors": errors, "statuses": sorted(statuses),
            **percentiles(latencies)}  # fmt: skip


# ------------------------------------------------------------------ scenarios
def conversations(pop: Population, params: Params) -> Result:
    """The first page of 50 of a user with ``params.conversations`` conversations."""
    server, count = pop.server, params.requests + WARMUP_REQUESTS
    if pop.is_echo:
        paths = ["/page?n=50&shape=conversation"] * count
        return timed_gets(server.base_url, None, paths, lambda *_: True)
    user = pop.extra[0]
    db = engine(server)
    started = time.perf_counter()
    try:
        seed_conversations(db, user.user_id, params.conversations, params.conversation_messages)
    finally:
        db.dispose()
    seeded = time.perf_counter() - started
    messages = params.conversation_messages
    # The peer wrote the odd seqs; the user has read half of each conversation.
    unread = sum(1 for seq in range(messages // 2 + 1, messages + 1) if seq % 2)

    def check(page: Any, _: str) -> bool:
        listed = page["conversations"]
        return len(listed) == 50 and page["next"] is not None and listed[0]["unread"] == unread

    found = timed_gets(server.base_url, user.token, ["/api/v1/conversations?limit=50"] * count,
                       check)  # fmt: skip
    return {**found, "conversations": params.conversations, "seed_seconds": seeded}


def history(pop: Population, params: Params) -> Result:
    """Pages of 50 of a conversation of ``params.history`` messages: the newest
    and ``before_seq`` a random seq (the same seeded sequence on every server)."""
    server, count, total = pop.server, params.requests + WARMUP_REQUESTS, params.history
    depths = random.Random(12).sample(range(52, total + 1), count)
    if pop.is_echo:
        paths = ["/page?n=50"] * count
        newest = timed_gets(server.base_url, None, paths, lambda *_: True)
        return {"newest": newest, "random": timed_gets(server.base_url, None, paths,
                                                       lambda *_: True)}  # fmt: skip
    user, peer = pop.extra[1], pop.extra[2]
    db = engine(server)
    started = time.perf_counter()
    try:
        conversation = seed_direct(db, user.user_id, peer.user_id, total, total,
                                   int(time.time() * 1000))  # fmt: skip
        with db.connect() as conn:
            stored = conn.scalar(select(func.count()).select_from(_messages()).where(
                _messages().c.conversation_id == conversation))  # fmt: skip
    finally:
        db.dispose()
    seeded = time.perf_counter() - started
    base = f"/api/v1/conversations/{quote(conversation, safe='')}/messages?limit=50"

    def check(page: Any, path: str) -> bool:
        seqs = [m["seq"] for m in page["messages"]]
        top = int(path.rsplit("=", 1)[1]) - 1 if "before_seq" in path else total
        return seqs == list(range(top - 49, top + 1)) and page["has_more"]

    newest = timed_gets(server.base_url, user.token, [base] * count, check)
    paths = [f"{base}&before_seq={d}" for d in depths]
    deep = timed_gets(server.base_url, user.token, paths, check)
    return {"newest": newest, "random": deep, "messages": total, "stored": stored,
            "seed_seconds": seeded}  # fmt: skip


def _messages() -> Any:
    from imchat.stores.history import MESSAGES

    return MESSAGES


def biggroup(pop: Population, params: Params) -> Result:
    """A group of ``params.big_group`` members, ``params.big_online`` of them
    online (the sender among them), one sender in a closed loop."""
    server = pop.server
    online = params.big_online if pop.is_echo else min(params.big_online, len(pop.group))
    job = {"kind": "throughput", "window": params.fanout_window, "warmup": params.warmup,
           "duration": params.duration, "fan": online - 1}  # fmt: skip
    if pop.is_echo:  # the broadcast ceiling to as many online sockets
        job.update(senders=[server.ws_url()], receivers=[server.ws_url()] * (online - 1),
                   targets=[{}], broadcast=True)  # fmt: skip
        return {**run_job(job), "members": params.big_group, "online": online}
    owner, others = pop.group[0], pop.group[1:online]
    group_id = server.create_group(owner, others)
    db = engine(server)
    try:
        started = time.perf_counter()
        add_offline_members(db, group_id, params.big_group - online)
        seeded = time.perf_counter() - started
        forget_cached_members(server, group_id)
        before = row_counts(db, group_id)
        job.update(senders=[server.ws_url(owner)], targets=[{"group": group_id}],
                   receivers=[server.ws_url(u) for u in others])  # fmt: skip
        result = run_job(job)
        time.sleep(1.0)  # every delivery arrived, so every row is written: margin all the same
        after = row_counts(db, group_id)
        result["cached_members"] = cached_members(server, group_id)
    finally:
        db.dispose()
    written = {k: after[k] - before[k] for k in after}
    return {
        **result, "members": params.big_group, "online": online, "seed_seconds": seeded,
        "rows_before": before, "rows_after": after, "rows_written": written,
        "history_rows_per_message": written["group_history"] / max(1, result["acked"]),
    }  # fmt: skip
