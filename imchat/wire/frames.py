"""Frames the server sends to clients over the WebSocket (docs/protocol.md).

Each is built in one place: the bus consumer makes ``ack``, ``msg``,
``update`` and ``event``; the gateway makes ``synced``, ``pong``, ``typing``,
``receipt`` and ``error``; a ``msg`` read back from storage is the same
``MsgFrame`` as one pushed live.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from imchat.wire.codec import Record, wire_field


@dataclass(frozen=True)
class AckFrame(Record):
    """The sender's message is accepted: its id, conversation, seq and time."""

    TYPE: ClassVar[str] = "ack"
    id: str
    msg_id: str
    conversation_id: str
    seq: int
    ts: int


@dataclass(frozen=True)
class MsgFrame(Record):
    """A message, live or pending; exactly one of ``to`` and ``group`` is set."""

    TYPE: ClassVar[str] = "msg"
    msg_id: str
    conversation_id: str
    seq: int
    sender: str = wire_field(wire="from")
    body: str = wire_field(default="")
    ts: int = wire_field(default=0)
    to: str | None = wire_field(omit_none=True, default=None)
    group: str | None = wire_field(omit_none=True, default=None)
    # The seq of the message this one answers, in the same conversation.
    reply_to: int | None = wire_field(omit_none=True, default=None)


@dataclass(frozen=True)
class EventFrame(Record):
    """A group membership change, for the members and the member concerned."""

    TYPE: ClassVar[str] = "event"
    event: str
    group: str
    user_id: str
    role: str | None = None
    actor_id: str | None = None
    ts: int | None = None


@dataclass(frozen=True)
class UpdateFrame(Record):
    """A message was edited, deleted or reacted to; ``message`` is its current state (M)."""

    TYPE: ClassVar[str] = "update"
    conversation_id: str
    seq: int
    msg_id: str
    kind: str  # "edited", "deleted" or "reaction"
    by: str
    message: dict[str, Any]


@dataclass(frozen=True)
class ReceiptFrame(Record):
    """A participant's delivered and read marks in a conversation moved."""

    TYPE: ClassVar[str] = "receipt"
    conversation_id: str
    user_id: str
    delivered_seq: int
    read_seq: int


@dataclass(frozen=True)
class SyncedFrame(Record):
    """Every pending message of the connection has been pushed (``count`` of them)."""

    TYPE: ClassVar[str] = "synced"
    count: int


@dataclass(frozen=True)
class PongFrame(Record):
    TYPE: ClassVar[str] = "pong"


@dataclass(frozen=True)
class ErrorFrame(Record):
    """A frame was refused; ``id`` names the client's send when it had one."""

    TYPE: ClassVar[str] = "error"
    code: str
    message: str
    id: str | None = wire_field(omit_none=True, default=None)


@dataclass(frozen=True)
class PresenceFrame(Record):
    """A user with whom the recipient shares a direct conversation came online
    (``last_seen`` null) or went offline (``last_seen`` when, in ms)."""

    TYPE: ClassVar[str] = "presence"
    user_id: str
    status: str
    last_seen: int | None


@dataclass(frozen=True)
class TypingFrame(Record):
    """A participant is typing in a conversation: relayed, never stored."""

    TYPE: ClassVar[str] = "typing"
    conversation_id: str
    user_id: str
