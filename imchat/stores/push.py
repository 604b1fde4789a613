"""SQL for Web Push: browsers' subscriptions and members' per-conversation switch."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import delete, select, tuple_, update
from sqlalchemy.orm import Session

from imchat.stores.models import ConversationMember, Group, Message, PushSubscription


@dataclass(frozen=True)
class Subscription:
    endpoint_hash: str
    user_id: str
    endpoint: str
    p256dh: str
    auth: str


def endpoint_hash(endpoint: str) -> str:
    return hashlib.sha256(endpoint.encode()).hexdigest()


def save(session: Session, user_id: str, endpoint: str, p256dh: str, auth: str) -> None:
    """Keep the subscription for ``user_id``. An endpoint already known is one
    browser subscribing again: its keys are replaced, and it now belongs to
    whoever subscribed last on that browser."""
    key = endpoint_hash(endpoint)
    row = session.get(PushSubscription, key)
    if row is None:
        session.add(
            PushSubscription(
                endpoint_hash=key, user_id=user_id, endpoint=endpoint, p256dh=p256dh, auth=auth
            )
        )
        return
    row.user_id, row.endpoint, row.p256dh, row.auth = user_id, endpoint, p256dh, auth


def remove(session: Session, user_id: str, endpoint: str) -> bool:
    """Remove the caller's subscription of ``endpoint``; whether there was one."""
    result = session.execute(
        delete(PushSubscription).where(
            PushSubscription.endpoint_hash == endpoint_hash(endpoint),
            PushSubscription.user_id == user_id,
        )
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def remove_gone(session: Session, hashes: Iterable[str]) -> None:
    """Remove subscriptions the push service no longer knows (404 or 410)."""
    keys = list(hashes)
    if keys:
        session.execute(delete(PushSubscription).where(PushSubscription.endpoint_hash.in_(keys)))


def of_users(session: Session, user_ids: Iterable[str]) -> dict[str, list[Subscription]]:
    """Every subscription of each of ``user_ids`` (those with none are absent)."""
    ids = sorted(set(user_ids))
    found: dict[str, list[Subscription]] = {}
    if not ids:
        return found
    rows = session.scalars(
        select(PushSubscription)
        .where(PushSubscription.user_id.in_(ids))
        .order_by(PushSubscription.created_at, PushSubscription.endpoint_hash)
    )
    for row in rows:
        found.setdefault(row.user_id, []).append(
            Subscription(row.endpoint_hash, row.user_id, row.endpoint, row.p256dh, row.auth)
        )
    return found


def keep_newest(session: Session, user_id: str, keep: int, current: str) -> None:
    """Remove the user's oldest subscriptions past the newest ``keep``, never ``current``."""
    hashes = session.scalars(
        select(PushSubscription.endpoint_hash)
        .where(PushSubscription.user_id == user_id, PushSubscription.endpoint_hash != current)
        .order_by(PushSubscription.created_at.desc(), PushSubscription.endpoint_hash)
    )
    remove_gone(session, list(hashes)[keep - 1 :])


# ------------------------------------------------------ per conversation
def switches(
    session: Session, pairs: Iterable[tuple[str, str]]
) -> dict[tuple[str, str], bool | None]:
    """The ``push`` column of each (user, conversation) membership that exists."""
    keys = sorted(set(pairs))
    if not keys:
        return {}
    rows = session.execute(
        select(
            ConversationMember.user_id, ConversationMember.conversation_id, ConversationMember.push
        ).where(tuple_(ConversationMember.user_id, ConversationMember.conversation_id).in_(keys))
    )
    return {(user, conversation): push for user, conversation, push in rows}


def set_switch(session: Session, user_id: str, conversation_id: str, push: bool | None) -> None:
    session.execute(
        update(ConversationMember)
        .where(
            ConversationMember.user_id == user_id,
            ConversationMember.conversation_id == conversation_id,
        )
        .values(push=push)
    )


def authors(session: Session, messages: Iterable[tuple[str, int]]) -> dict[tuple[str, int], str]:
    """The sender of each (conversation, seq) still in history (replies' targets)."""
    keys = sorted(set(messages))
    if not keys:
        return {}
    rows = session.execute(
        select(Message.conversation_id, Message.seq, Message.sender_id).where(
            tuple_(Message.conversation_id, Message.seq).in_(keys)
        )
    )
    return {(conversation, seq): sender for conversation, seq, sender in rows}


def groups(session: Session, group_ids: Iterable[str]) -> dict[str, tuple[int, str]]:
    """Each group's member count and name."""
    ids = sorted(set(group_ids))
    if not ids:
        return {}
    rows = session.execute(
        select(Group.group_id, Group.member_count, Group.name).where(Group.group_id.in_(ids))
    )
    return {group_id: (count, name) for group_id, count, name in rows}


def switched_on(session: Session, conversation_id: str, user_ids: Iterable[str]) -> set[str]:
    """Which of ``user_ids`` turned push on in the conversation (read by the
    conversation's index: a large group's unrouted members are many)."""
    wanted = set(user_ids)
    rows = session.scalars(
        select(ConversationMember.user_id).where(
            ConversationMember.conversation_id == conversation_id,
            ConversationMember.push.is_(True),
        )
    )
    return {user_id for user_id in rows if user_id in wanted}
