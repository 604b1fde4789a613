"""The push job (``imchat.push_notify``): one batch of messages whose
recipients had no open connection when the message was delivered.

For each message and unrouted recipient it applies the rule of
``subscriptions`` (direct: yes; group: the member's switch, a reply to one of
their messages, or a group of at most ``IMCHAT_PUSH_GROUP_MUTE_ABOVE``
members), then sends the notification to every browser the recipient
subscribed, a few at a time. Best effort: a failure is logged and counted,
never retried (the message waits as pending for the next connection anyway);
a subscription the push service answers 404 or 410 for is removed.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import requests
from pywebpush import WebPushException, webpush

from imchat import metrics
from imchat.services.jobs import job
from imchat.stores import push as push_store
from imchat.stores import users as user_store
from imchat.stores.push import Subscription

if TYPE_CHECKING:
    from py_vapid import Vapid02
    from sqlalchemy.orm import Session

    from imchat.container import Services

log = logging.getLogger("imchat.push")
PUSH_NOTIFY = "imchat.push_notify"
PREVIEW_CHARS = 120
# Push service requests in flight at once per job.
CONCURRENCY = 16
GONE = frozenset({404, 410})


@dataclass(frozen=True)
class Unrouted:
    """A message just delivered, and those of its recipients with no route."""

    conversation_id: str
    msg_id: str
    seq: int
    sender: str
    body: str
    group: str | None
    reply_to: int | None
    users: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "conversation_id": self.conversation_id,
            "msg_id": self.msg_id,
            "seq": self.seq,
            "sender": self.sender,
            "body": self.body,
            "group": self.group,
            "reply_to": self.reply_to,
            "users": list(self.users),
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Unrouted:
        return cls(
            conversation_id=str(raw["conversation_id"]),
            msg_id=str(raw["msg_id"]),
            seq=int(raw["seq"]),
            sender=str(raw["sender"]),
            body=str(raw.get("body") or ""),
            group=raw.get("group"),
            reply_to=raw.get("reply_to"),
            users=tuple(str(u) for u in raw["users"]),
        )


def preview(body: str) -> str:
    """The start of a message for a notification."""
    body = " ".join(body.split())
    return body if len(body) <= PREVIEW_CHARS else body[: PREVIEW_CHARS - 1] + "\u2026"


@dataclass(frozen=True)
class Notification:
    subscription: Subscription
    payload: dict[str, Any]


@job(PUSH_NOTIFY)
def push_notify(services: Services, payload: dict[str, Any]) -> None:
    """``payload``: ``{"messages": [Unrouted.to_dict(), ...]}``."""
    messages = [Unrouted.from_dict(m) for m in payload["messages"]]
    notifications = list(plan(services, messages))
    if not notifications:
        return
    gone = send_all(services, notifications)
    if gone:
        with services.db.session() as session:
            push_store.remove_gone(session, gone)
        log.info("removed %d push subscription(s) the push service no longer knows", len(gone))


def plan(services: Services, messages: Sequence[Unrouted]) -> Iterator[Notification]:
    """The notifications to send: who is notified of what, on which browsers."""
    mute_above = services.settings.push_group_mute_above
    with services.db.session() as session:
        pairs = [(u, m.conversation_id) for m in messages for u in m.users if m.group is None]
        switches = push_store.switches(session, pairs)
        groups = push_store.groups(session, [m.group for m in messages if m.group])
        replied = [(m.conversation_id, m.reply_to) for m in messages if m.group and m.reply_to]
        authors = push_store.authors(session, replied)
        chosen: list[tuple[Unrouted, list[str]]] = []
        for m in messages:
            if m.group is None:
                users = [
                    u
                    for u in m.users
                    if u != m.sender and switches.get((u, m.conversation_id)) is not False
                ]
            else:
                users = _group_recipients(session, m, groups, authors, mute_above)
            if users:
                chosen.append((m, users))
        subscriptions = push_store.of_users(session, [u for _, users in chosen for u in users])
        names = user_store.names(session, [m.sender for m, _ in chosen])
    for m, users in chosen:
        body = _payload(m, names.get(m.sender, ""), groups.get(m.group or ""))
        for user in users:
            for subscription in subscriptions.get(user, []):
                yield Notification(subscription, body)


def _group_recipients(
    session: Session,
    m: Unrouted,
    groups: dict[str, tuple[int, str]],
    authors: dict[tuple[str, int], str],
    mute_above: int,
) -> list[str]:
    """The unrouted members notified of a group message: everyone not
    switched off in a group small enough; in a larger one those switched on,
    and the author of the message it replies to unless switched off."""
    members = [u for u in m.users if u != m.sender]
    if not members:
        return []
    size = groups.get(m.group or "", (0, ""))[0]
    if size <= mute_above:
        switches = push_store.switches(session, [(u, m.conversation_id) for u in members])
        return [u for u in members if switches.get((u, m.conversation_id)) is not False]
    chosen = push_store.switched_on(session, m.conversation_id, members)
    target = authors.get((m.conversation_id, m.reply_to)) if m.reply_to else None
    if target is not None and target in members and target not in chosen:
        switch = push_store.switches(session, [(target, m.conversation_id)])
        if switch.get((target, m.conversation_id)) is not False:
            chosen.add(target)
    return [u for u in members if u in chosen]


def _payload(m: Unrouted, sender_name: str, group: tuple[int, str] | None) -> dict[str, Any]:
    """What the service worker gets: enough to show the notification and open the conversation."""
    title = sender_name or "New message"
    if group is not None:
        title = f"{title} in {group[1]}"
    return {
        "conversation_id": m.conversation_id,
        "msg_id": m.msg_id,
        "seq": m.seq,
        "sender": m.sender,
        "sender_name": sender_name,
        "title": title,
        "body": preview(m.body),
        "group": m.group,
    }


def send_all(services: Services, notifications: Sequence[Notification]) -> list[str]:
    """Send every notification; the subscriptions the push service says are gone."""
    signer = services.vapid.signer()
    with (
        requests.Session() as http,
        ThreadPoolExecutor(
            max_workers=min(CONCURRENCY, len(notifications)), thread_name_prefix="imchat-push"
        ) as pool,
    ):
        results = list(pool.map(lambda n: send_one(services, signer, http, n), notifications))
    return sorted(
        {
            n.subscription.endpoint_hash
            for n, gone in zip(notifications, results, strict=True)
            if gone
        }
    )


def send_one(
    services: Services, signer: Vapid02, http: requests.Session, notification: Notification
) -> bool:
    """One push request; True when the push service says the subscription is gone."""
    settings = services.settings
    subscription = notification.subscription
    info = {
        "endpoint": subscription.endpoint,
        "keys": {"p256dh": subscription.p256dh, "auth": subscription.auth},
    }
    # RFC 8030 Topic: a second send of the same message (a replayed batch)
    # replaces the first at the push service instead of notifying twice.
    topic = hashlib.sha256(notification.payload["msg_id"].encode()).hexdigest()[:32]
    try:
        webpush(
            subscription_info=info,
            data=json.dumps(notification.payload),
            vapid_private_key=signer,
            vapid_claims={"sub": settings.vapid_subject},
            ttl=settings.push_ttl_seconds,
            timeout=settings.push_timeout_seconds,
            headers={"Topic": topic, "Urgency": "high"},
            requests_session=http,
        )
    except WebPushException as exc:
        if exc.status_code in GONE:
            metrics.PUSH_SENT.labels("gone").inc()
            return True
        metrics.PUSH_SENT.labels("failed").inc()
        log.warning("push to %s failed: %s", _origin(subscription.endpoint), exc.message)
        return False
    except Exception as exc:  # a timeout, a refused connection, a bad key: the next one goes on
        metrics.PUSH_SENT.labels("failed").inc()
        log.warning("push to %s failed: %r", _origin(subscription.endpoint), exc)
        return False
    metrics.PUSH_SENT.labels("sent").inc()
    return False


def _origin(endpoint: str) -> str:
    """The push service of an endpoint, for logs (the rest of it is a secret of the browser)."""
    return "/".join(endpoint.split("/", 3)[:3])
