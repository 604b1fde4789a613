"""What each gateway is sent for one batch, in order: one ``GatewayBatch`` per gateway.

A message's recipients that no gateway holds a connection of are kept too,
and handed to the Web Push dispatcher once the gateways have been sent the
batch (``imchat.services.push``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from imchat import metrics
from imchat.services.push.notify import Unrouted, preview
from imchat.wire.batch import AckDelivery, FramePush, GatewayBatch, MessagePush
from imchat.wire.frames import AckFrame, MsgFrame

if TYPE_CHECKING:
    from imchat.container import Services


@dataclass
class Outbox:
    services: Services
    batches: defaultdict[str, GatewayBatch] = field(
        default_factory=lambda: defaultdict(GatewayBatch)
    )
    unrouted: list[Unrouted] = field(default_factory=list)

    def ack(self, gateway_id: str, conn_id: str, frame: AckFrame) -> None:
        self.batches[gateway_id].acks.append(AckDelivery(conn_id, frame))

    def push_message(
        self, frame: MsgFrame, users: Sequence[str], exclude_conn: str | None = None
    ) -> None:
        """A ``msg`` to every connection of ``users`` (but the sender's own); the
        users but the sender with no connection anywhere are kept for Web Push."""
        routed: set[str] = set()
        for gateway_id, local_users in self._route(users).items():
            self.batches[gateway_id].msgs.append(MessagePush(frame, local_users, exclude_conn))
            routed.update(local_users)
        offline = [u for u in dict.fromkeys(users) if u not in routed and u != frame.sender]
        if offline:
            self.unrouted.append(
                Unrouted(
                    conversation_id=frame.conversation_id,
                    msg_id=frame.msg_id,
                    seq=frame.seq,
                    sender=frame.sender,
                    body=preview(frame.body),
                    group=frame.group,
                    reply_to=frame.reply_to,
                    users=tuple(offline),
                )
            )

    def push_frame(
        self, frame: dict[str, Any], users: Sequence[str], exclude_conn: str | None = None
    ) -> None:
        """Any other server frame to every connection of ``users`` (but one, if named)."""
        for gateway_id, local_users in self._route(users).items():
            self.batches[gateway_id].events.append(FramePush(frame, local_users, exclude_conn))

    def end_sessions(self, user_id: str, session_ids: Sequence[str]) -> None:
        """Close the user's connections of these sessions, wherever they are."""
        for gateway_id in self._route([user_id]):
            self.batches[gateway_id].ends.extend(session_ids)

    def _route(self, users: Sequence[str]) -> dict[str, list[str]]:
        """The users of each gateway that holds a connection of one of them."""
        by_gateway: defaultdict[str, list[str]] = defaultdict(list)
        metrics.ROUTE_LOOKUPS.inc(len(users))
        for user_id in users:
            for gateway_id in self.services.router.gateways_for(user_id):
                by_gateway[gateway_id].append(user_id)
        return by_gateway

    def send(self) -> None:
        self.services.channel.send_many(
            [(gateway_id, batch.encode()) for gateway_id, batch in self.batches.items()]
        )
        if self.unrouted:  # stored and delivered: now, and off this path, the notifications
            self.services.push_dispatcher.add(self.unrouted)
