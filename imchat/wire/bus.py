"""Records on the durable bus: accepted messages and membership changes.

``v`` is the wire version of the release that wrote the record; a record of
an older release (no ``v``) decodes as version 1.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from imchat.wire.codec import Record, wire_field

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
