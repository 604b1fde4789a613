"""What the bus consumer sends one gateway for one batch: acks, messages, frames.

The encoding is the one gateways of release 1 read: lists of positional
entries under ``acks``, ``msgs`` and ``events``. A newer release adds keys
(an older gateway ignores them) and never reorders an entry's positions.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from imchat.wire.bus import WIRE_VERSION
from imchat.wire.codec import WireError
from imchat.wire.frames import AckFrame, MsgFrame


@dataclass(frozen=True)
class AckDelivery:
    """An ack for the sender's connection ``conn_id``."""

    conn_id: str
    frame: AckFrame


@dataclass(frozen=True)
class MessagePush:
    """A ``msg`` for every local connection of ``users`` but ``exclude_conn`` (the sender's)."""

    frame: MsgFrame
    users: list[str]
    exclude_conn: str | None = None


@dataclass(frozen=True)
class FramePush:
    """Any other server frame, as its JSON object, for every local connection of ``users``.

    The gateway forwards it without knowing its type, so a new kind of frame
    needs no new gateway code.
    """

    frame: dict[str, Any]
    users: list[str]
    exclude_conn: str | None = None


@dataclass
class GatewayBatch:
    acks: list[AckDelivery] = field(default_factory=list)
    msgs: list[MessagePush] = field(default_factory=list)
    events: list[FramePush] = field(default_factory=list)
    # Sessions that ended (logout, password change, a reused refresh token):
    # their connections are closed with 4401. Key ``ends``, added in release 2.
    ends: list[str] = field(default_factory=list)
    # Set by the channel, never by the consumer: the channel was lost and is
    # back, so whatever it carried meanwhile is gone (the gateway catches up).
    resync: bool = False

    def __bool__(self) -> bool:
        return bool(self.acks or self.msgs or self.events or self.ends or self.resync)

    def encode(self) -> bytes:
        out: dict[str, Any] = {"v": WIRE_VERSION}
        if self.acks:
            out["acks"] = [[a.conn_id, a.frame.to_dict()] for a in self.acks]
        if self.msgs:
            out["msgs"] = [[m.frame.to_dict(), m.users, m.exclude_conn] for m in self.msgs]
        if self.events:
            out["events"] = [[e.frame, e.users, e.exclude_conn] for e in self.events]
        if self.ends:
            out["ends"] = self.ends
        if self.resync:
            out["resync"] = True
        return json.dumps(out).encode()

    @classmethod
    def decode(cls, raw: bytes | str) -> GatewayBatch:
        try:
            data = json.loads(raw)
        except (ValueError, RecursionError) as exc:
            raise WireError(f"a gateway batch must be JSON: {exc}") from None
        if not isinstance(data, dict):
            raise WireError("a gateway batch must be a JSON object")
        try:
            return cls(
                acks=[AckDelivery(c, AckFrame.from_dict(f)) for c, f, *_ in data.get("acks", [])],
                msgs=[
                    MessagePush(MsgFrame.from_dict(f), list(u), x)
                    for f, u, x, *_ in data.get("msgs", [])
                ],
                events=[FramePush(dict(f), list(u), *x[:1]) for f, u, *x in data.get("events", [])],
                ends=[str(session_id) for session_id in data.get("ends", [])],
                resync=bool(data.get("resync")),
            )
        except (TypeError, ValueError) as exc:
            raise WireError(f"malformed gateway batch entry: {exc}") from None


# What a channel hands its listener after it was lost and is back.
RESYNC = GatewayBatch(resync=True).encode()
