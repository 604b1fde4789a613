"""Edits, deletes and reactions: who may make them, checked by the gateway at once.

The consumer applies an accepted change later, in bus order; what is checked
here is what the user could see and do when the frame came in.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from imchat.stores import changes as change_store
from imchat.stores import conversations as conversation_store
from imchat.stores import groups as group_store
from imchat.stores import history
from imchat.stores.history import MessageRecord
from imchat.stores.models import Conversation

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from imchat.container import Services

MAX_EMOJIS = 20
MODERATORS = ("owner", "admin")


class ChangeRefused(Exception):
    """The change may not be made: ``code`` is the error frame's code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


def check(
    services: Services,
    user_id: str,
    cid: str,
    conversation_id: str,
    seq: int,
    kind: str,
    emoji: str | None = None,
) -> MessageRecord:
    """The message a change of ``kind`` (edit, delete, react) targets, once the
    user may make it; raises ChangeRefused otherwise. A resend of a change already
    applied passes as it is: the consumer acks it as the first time."""
    with services.db.session() as session:
        earlier = change_store.applied(session, user_id, cid)
        if earlier is not None:
            found = history.at(session, earlier.conversation_id, earlier.seq)
            if found is not None:
                return found
        message = _visible(session, user_id, conversation_id, seq, kind)
        if kind == "edit":
            _may_edit(services, user_id, message)
        elif kind == "delete":
            _may_delete(services, session, user_id, message)
        elif emoji is not None:
            _may_add(session, message, emoji)
        return message


def _visible(
    session: Session, user_id: str, conversation_id: str, seq: int, kind: str
) -> MessageRecord:
    member = conversation_store.membership(session, user_id, conversation_id)
    current = member is not None and member.left_seq is None
    if kind == "react" and not current:
        known = member is not None or session.get(Conversation, conversation_id) is not None
        if known:
            raise ChangeRefused("forbidden", "not a participant of this conversation")
    message = None
    if member is not None and current and member.sees(seq):
        message = history.at(session, conversation_id, seq)
    if message is None or message.deleted:
        raise ChangeRefused("not_found", "no such message")
    return message


def _within_window(services: Services, message: MessageRecord) -> bool:
    age_ms = int(time.time() * 1000) - message.ts
    return age_ms <= services.settings.edit_window_seconds * 1000


def _may_edit(services: Services, user_id: str, message: MessageRecord) -> None:
    if message.sender_id != user_id:
        raise ChangeRefused("forbidden", "only its sender may edit a message")
    if not _within_window(services, message):
        raise ChangeRefused("forbidden", "the message is too old to edit")


def _may_delete(services: Services, session: Session, user_id: str, message: MessageRecord) -> None:
    if message.sender_id == user_id and _within_window(services, message):
        return
    group = message.group_id
    if group is not None and group_store.role_of(session, group, user_id) in MODERATORS:
        return
    raise ChangeRefused("forbidden", "only its sender, in time, or a group's owner or admin")


def _may_add(session: Session, message: MessageRecord, emoji: str) -> None:
    present = change_store.emojis(session, message.conversation_id, message.seq)
    if emoji not in present and len(present) >= MAX_EMOJIS:
        raise ChangeRefused("bad_request", f"a message has at most {MAX_EMOJIS} distinct emojis")
