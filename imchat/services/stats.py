"""Daily message counters, kept on the delivery path.

The bus consumer counts each freshly accepted message in the transaction of
its batch's pending rows: messages are not kept once delivered, so they can
only be counted on the way through, and a batch rolled back is counted zero
times. The beat jobs that roll up active users live in ``maintenance``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

from sqlalchemy.orm import Session

from imchat.stores import stats as stats_store
from imchat.wire.bus import MessageEnvelope


def record_messages(session: Session, envelopes: Iterable[MessageEnvelope]) -> None:
    """Add messages to their UTC day's stats, in the caller's transaction.

    Pass each message once: the envelopes whose seq assignment is not a
    duplicate, so that a batch replayed after a crash is not counted twice.
    """
    days = tally_by_day(envelopes)
    for day in sorted(days):  # one lock order for every consumer
        tally = days[day]
        stats_store.record_activity(session, day, tally.counts(), tally.senders)


@dataclass
class DayTally:
    direct: int = 0
    group: int = 0
    senders: set[str] = field(default_factory=set)

    def add(self, envelope: MessageEnvelope) -> None:
        if envelope.group is not None:
            self.group += 1
        else:
            self.direct += 1
        self.senders.add(envelope.sender)

    def counts(self) -> dict[str, int]:
        return {"direct_messages": self.direct, "group_messages": self.group}


def tally_by_day(envelopes: Iterable[MessageEnvelope]) -> dict[date, DayTally]:
    days: defaultdict[date, DayTally] = defaultdict(DayTally)
    for envelope in envelopes:
        days[utc_day(envelope.ts)].add(envelope)
    return dict(days)


def utc_day(ts_ms: int) -> date:
    """The UTC day of a wire timestamp (milliseconds since the epoch)."""
    return datetime.fromtimestamp(ts_ms / 1000, UTC).date()
