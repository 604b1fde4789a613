"""The consumer's work on a batch's message changes: applied in bus order in
one transaction, then acked and announced with ``update`` frames.

A change already recorded under its author's client id (a resend, or a batch
replayed after a crash) is acked as the first time and changes nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from imchat.services import groups
from imchat.services.conversations import message_view
from imchat.services.delivery.outbox import Outbox
from imchat.services.message_changes import MAX_EMOJIS
from imchat.stores import changes as change_store
from imchat.stores import db, history
from imchat.stores.changes import AppliedChange
from imchat.wire.bus import MessageChange
from imchat.wire.frames import AckFrame, UpdateFrame

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from imchat.container import Services

UPDATE_KIND = {"edit": "edited", "delete": "deleted", "react": "reaction"}


def deliver_changes(services: Services, changes: Sequence[MessageChange], outbox: Outbox) -> None:
    results: list[tuple[AppliedChange, bool]] = []

    def write() -> None:
        results.clear()
        with services.db.session() as session:
            results.extend(_apply(session, change) for change in changes)

    db.retry_lock_conflicts(write)
    for change, (done, _) in zip(changes, results, strict=True):
        ack = AckFrame(change.cid, done.msg_id, done.conversation_id, done.seq, done.ts)
        outbox.ack(change.gateway, change.conn, ack)
    fresh = [change for change, (_, new) in zip(changes, results, strict=True) if new]
    if fresh:
        _announce(services, fresh, outbox)


def _apply(session: Session, change: MessageChange) -> tuple[AppliedChange, bool]:
    """The change's ack, and whether it was applied now (not earlier)."""
    earlier = change_store.applied(session, change.by, change.cid)
    if earlier is not None:
        return earlier, False
    where = (change.conversation_id, change.seq)
    if change.kind == "edit" and change.body is not None:
        change_store.edit(session, *where, change.body, change.ts)
    elif change.kind == "delete":
        change_store.delete_message(session, *where)
    elif change.kind == "react" and change.emoji is not None and _reactable(session, change):
        change_store.react(session, *where, change.emoji, change.by, bool(change.on))
    done = AppliedChange(change.conversation_id, change.seq, change.msg_id, change.ts)
    change_store.record(session, change.by, change.cid, done)
    return done, True


def _reactable(session: Session, change: MessageChange) -> bool:
    """The message is still there, and the reaction keeps it within the emoji
    bound (checked by the gateway too; here against reactions accepted meanwhile)."""
    message = history.at(session, change.conversation_id, change.seq)
    if message is None or message.deleted:
        return False
    if not change.on:
        return True
    present = change_store.emojis(session, change.conversation_id, change.seq)
    return change.emoji in present or len(present) < MAX_EMOJIS


def _announce(services: Services, changes: Sequence[MessageChange], outbox: Outbox) -> None:
    """An ``update`` with the message as it is now, to every open connection of
    every participant, the author's other connections and this one included."""
    with services.db.session() as session:
        states = {}
        for change in changes:
            key = (change.conversation_id, change.seq)
            if key not in states:
                message = history.at(session, *key)
                found = change_store.reactions(session, change.conversation_id, [change.seq])
                states[key] = (message, found.get(change.seq, {}))
    for change in changes:
        message, reactions = states[(change.conversation_id, change.seq)]
        if message is None:  # expired from history meanwhile
            continue
        frame = UpdateFrame(
            conversation_id=change.conversation_id,
            seq=change.seq,
            msg_id=change.msg_id,
            kind=UPDATE_KIND[change.kind],
            by=change.by,
            message=message_view(message, reactions),
        )
        outbox.push_frame(frame.to_dict(), _participants(services, message))


def _participants(services: Services, message: history.MessageRecord) -> list[str]:
    if message.group_id is not None:
        return groups.member_ids(services, message.group_id) or []
    return list(dict.fromkeys(u for u in (message.sender_id, message.recipient_id) if u))
