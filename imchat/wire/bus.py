"""Records on the durable bus: accepted messages, their changes, and membership changes.

A message's topic carries ``MessageEnvelope`` records and ``MessageChange``
records (edits, deletes, reactions) on the conversation's key, so a change
keeps its place after the message it changes. A change says ``"record":
"change"``; an envelope has no ``record`` key (releases before changes
existed wrote none), and a change has no ``from``, so a consumer of such a
release drops a change as undecodable rather than taking it for a message.

``v`` is the wire version of the release that wrote the record; a record of
an older release (no ``v``) decodes as version 1.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import ClassVar

from imchat.wire.codec import Record, WireError, wire_field

WIRE_VERSION = 1


@dataclass(frozen=True)
class MessageEnvelope(Record):
    """A message the gateway accepted, before its seq is assigned by the consumer.

    ``gateway`` and ``conn`` say where to send the ack; exactly one of ``to``
    and ``group`` is set.
    """

    msg_id: str
    cid: str
    sender: str = wire_field(wire="from")
    conversation_id: str = wire_field()
    body: str = wire_field()
    ts: int = wire_field()
    gateway: str = wire_field()
    conn: str = wire_field()
    to: str | None = wire_field(omit_none=True, default=None)
    group: str | None = wire_field(omit_none=True, default=None)
    reply_to: int | None = wire_field(omit_none=True, default=None)
    v: int = wire_field(default=WIRE_VERSION)

    @property
    def dedup_key(self) -> str:
        """One message per sender and client id, however often it is resent."""
        return f"{self.sender}:{self.cid}"

    @property
    def kind(self) -> str:
        return "group" if self.group is not None else "direct"


@dataclass(frozen=True)
class MembershipChange(Record):
    """A committed change of a group's membership, with the member list after it."""

    event: str
    group_id: str
    user_id: str
    role: str | None = None
    actor_id: str | None = None
    ts: int | None = None
    member_ids: list[str] = field(default_factory=list)
    member_count: int | None = wire_field(omit_none=True, default=None)
    v: int = wire_field(default=WIRE_VERSION)


@dataclass(frozen=True)
class MessageChange(Record):
    """An edit, delete or reaction the gateway accepted, of the message at ``seq``.

    ``kind`` is ``edit`` (with ``body``), ``delete``, or ``react`` (with ``emoji``
    and ``on``); ``gateway`` and ``conn`` say where to send the ack.
    """

    RECORD: ClassVar[str] = "change"
    kind: str
    cid: str
    by: str
    conversation_id: str
    seq: int
    msg_id: str
    ts: int
    gateway: str
    conn: str
    group: str | None = wire_field(omit_none=True, default=None)
    body: str | None = wire_field(omit_none=True, default=None)
    emoji: str | None = wire_field(omit_none=True, default=None)
    on: bool | None = wire_field(omit_none=True, default=None)
    record: str = wire_field(default=RECORD)
    v: int = wire_field(default=WIRE_VERSION)


def decode_message_record(raw: bytes | str) -> MessageEnvelope | MessageChange:
    """A record of a message topic: a change when it says so, else an envelope."""
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise WireError(f"a message record must be JSON: {exc}") from None
    if isinstance(data, dict) and data.get("record") == MessageChange.RECORD:
        return MessageChange.from_dict(data)
    return MessageEnvelope.from_dict(data)
