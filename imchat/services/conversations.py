"""Conversations: the caller's list, one conversation, and its history.

Visibility: a direct conversation to its two users; a group's to its
current members, from the seq at which they joined. A former member gets
403, an unknown conversation 404.
"""

from __future__ import annotations

import base64
import binascii
from typing import TYPE_CHECKING, Any

from imchat.errors import APIError
from imchat.services import presence
from imchat.stores import changes, history
from imchat.stores import conversations as conversation_store
from imchat.stores.conversations import ConversationView, Membership
from imchat.stores.models import Conversation

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from imchat.container import Services


# ------------------------------------------------------------------ reading
def list_conversations(
    services: Services, user_id: str, limit: int, before: str | None = None
) -> dict[str, Any]:
    """A page of the caller's conversations, most recent activity first."""
    cursor = _decode_cursor(before) if before else None
    with services.db.session() as session:
        views = conversation_store.for_user(session, user_id, limit + 1, before=cursor)
    page = views[:limit]
    more = len(views) > limit
    return {
        "conversations": with_presence(services, page),
        "next": _encode_cursor(page[-1]) if more and page else None,
    }


def get_conversation(services: Services, user_id: str, conversation_id: str) -> dict[str, Any]:
    with services.db.session() as session:
        member_or_error(session, user_id, conversation_id)
        found = conversation_store.for_user(session, user_id, 1, conversation_id=conversation_id)
    if not found:  # a direct conversation is listed from its first message on
        raise APIError(404, "no such conversation")
    return with_presence(services, found)[0]


def with_presence(services: Services, views: list[ConversationView]) -> list[dict[str, Any]]:
    """The API's C of each view, a direct one with its peer's ``presence``
    (null behind a block), the facts from the database read with the page."""
    peers = {
        v.peer_id: presence.PeerFacts(v.peer_last_seen_ms, v.peer_shunned)
        for v in views
        if v.kind == "direct" and v.peer_id
    }
    seen = presence.presence_of(services, peers)
    out = [conversation_view(v) for v in views]
    for conversation in out:
        if conversation["kind"] == "direct":
            conversation["presence"] = seen.get(conversation["peer_id"])
    return out


def history_page(
    services: Services,
    user_id: str,
    conversation_id: str,
    limit: int,
    before_seq: int | None = None,
    after_seq: int | None = None,
) -> dict[str, Any]:
    """Messages of the conversation the caller may read, ascending, and whether more lie
    past the page (below it, or above it when reading forward with ``after_seq``)."""
    with services.db.session() as session:
        member = member_or_error(session, user_id, conversation_id)
        messages, more = history.page(
            session,
            conversation_id,
            floor=member.joined_seq,
            ceiling=member.left_seq,
            before_seq=before_seq,
            after_seq=after_seq,
            limit=limit,
        )
        # One query for the whole page's reactions, not one per message.
        reactions = changes.reactions(session, conversation_id, [m.seq for m in messages])
    views = [message_view(m, reactions.get(m.seq)) for m in messages]
    return {"messages": views, "has_more": more}


def readable_message(services: Services, user_id: str, conversation_id: str, seq: int) -> bool:
    """Whether ``seq`` is a message of the conversation that the user may read."""
    with services.db.session() as session:
        member = conversation_store.membership(session, user_id, conversation_id)
        if member is None or not member.sees(seq):
            return False
        return history.exists_at(session, conversation_id, seq)


def member_or_error(session: Session, user_id: str, conversation_id: str) -> Membership:
    member = conversation_store.membership(session, user_id, conversation_id)
    if member is not None and member.left_seq is None:
        return member
    if member is not None or session.get(Conversation, conversation_id) is not None:
        raise APIError(403, "not a participant of this conversation")
    raise APIError(404, "no such conversation")


# -------------------------------------------------------------------- views
def message_view(
    message: history.MessageRecord, reactions: changes.Reactions | None = None
) -> dict[str, Any]:
    """M of the API: a message in its current state; ``reactions`` is
    ``{emoji: [user_id, ...]}`` (none when not given)."""
    view: dict[str, Any] = {
        "msg_id": message.msg_id,
        "conversation_id": message.conversation_id,
        "seq": message.seq,
        "from": message.sender_id,
    }
    if message.group_id is not None:
        view["group"] = message.group_id
    else:
        view["to"] = message.recipient_id
    view.update(
        body=None if message.deleted else message.body,
        ts=message.ts,
        reply_to=message.reply_to,
        edited_at=message.edited_at,
        deleted=message.deleted,
        reactions={} if message.deleted else dict(reactions or {}),
    )
    return view


def conversation_view(view: ConversationView) -> dict[str, Any]:
    """C of the API: a conversation as its user sees it."""
    out: dict[str, Any] = {"conversation_id": view.conversation_id, "kind": view.kind}
    if view.kind == "group":
        out.update(group_id=view.group_id, name=view.name)
    else:
        out.update(
            peer_id=view.peer_id,
            peer_delivered_seq=view.peer_delivered_seq or 0,
            peer_read_seq=view.peer_read_seq or 0,
        )
    last = view.last_message
    out.update(
        last_seq=view.last_seq,
        last_message=message_view(last) if last is not None else None,
        last_activity=view.last_ts,
        delivered_seq=view.delivered_seq,
        read_seq=view.read_seq,
        unread=view.unread,
    )
    return out


# ------------------------------------------------------------------ cursors
def _encode_cursor(view: ConversationView) -> str:
    raw = f"{view.last_ts}:{view.conversation_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[int, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        ts, conversation_id = raw.split(":", 1)
        # Bounded like the BIGINT it is compared with: SQLite cannot bind a larger int.
        if not 0 <= int(ts) < 2**63:
            raise ValueError(ts)
        return int(ts), conversation_id
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise APIError(400, "invalid cursor: pass the `next` of a page") from None
