"""What the contract says an ``edit``, ``delete`` or ``react`` frame must get,
worked out from what the fuzzing user has done so far (docs/protocol.md,
Edits, deletes and reactions).

The model follows every message of the conversations the fuzzer may name
(seeded before, and each ``send`` it had acked) and every change it had
acked; from that it names the one answer a valid change frame must get, and
at the end what history must hold and which ``update`` frames the other
participant must have got: nothing accepted may be lost.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

MAX_EMOJIS = 20
MODERATORS = ("owner", "admin")
UPDATE_KIND = {"edit": "edited", "delete": "deleted", "react": "reaction"}
CHANGES = tuple(UPDATE_KIND)

Frame = dict[str, Any]


@dataclass
class Message:
    author: str
    msg_id: str
    body: str
    group: str | None = None
    deleted: bool = False
    edited: bool = False
    emojis: set[str] = field(default_factory=set)  # the fuzzing user's reactions


@dataclass(frozen=True)
class Expected:
    """``ack`` (of ``conversation_id``/``seq``/``msg_id``) or ``error`` with ``code``."""

    answer: str
    code: str | None = None
    conversation_id: str | None = None
    seq: int | None = None
    msg_id: str | None = None
    fresh: bool = False  # applied now: the other participants get an update


@dataclass
class Model:
    user: str  # the fuzzing user
    # Conversations the user takes part in, and those that exist without them.
    participant: set[str] = field(default_factory=set)
    others: set[str] = field(default_factory=set)
    roles: dict[str, str] = field(default_factory=dict)  # group id -> the user's role
    messages: dict[tuple[str, int], Message] = field(default_factory=dict)
    acked: dict[str, Expected] = field(default_factory=dict)  # change id -> its first ack
    # (conversation_id, seq, update kind) of every change applied: one update each.
    applied: list[tuple[str, int, str]] = field(default_factory=list)
    # (frame type, "ack" or the error code): what the fuzzing reached.
    answers: Counter[tuple[str, str]] = field(default_factory=Counter)

    def seeded(self, ack: Frame, author: str, body: str, group: str | None = None) -> None:
        """A message that exists: from an ``ack`` of its send."""
        key = (ack["conversation_id"], int(ack["seq"]))
        # A resent id gets the first ack back: that message, as it is now.
        self.messages.setdefault(key, Message(author, ack["msg_id"], body, group))

    def expect(self, frame: Frame) -> Expected:
        """The answer a valid change frame of the user must get now."""
        expected = self._expect(frame)
        self.answers[(frame["type"], expected.code or expected.answer)] += 1
        return expected

    def _expect(self, frame: Frame) -> Expected:
        kind, cid = frame["type"], frame["id"]
        if cid in self.acked:  # a resend: the first ack again, nothing changes
            first = self.acked[cid]
            return Expected("ack", None, first.conversation_id, first.seq, first.msg_id)
        conversation, seq = frame["conversation_id"], frame["seq"]
        if conversation not in self.participant:
            if kind == "react" and conversation in self.others:
                return Expected("error", "forbidden")
            return Expected("error", "not_found")
        message = self.messages.get((conversation, seq))
        if message is None or message.deleted:
            return Expected("error", "not_found")
        mine = message.author == self.user
        if kind == "edit" and not mine:
            return Expected("error", "forbidden")
        if kind == "delete" and not mine:
            if self.roles.get(message.group or "") not in MODERATORS:
                return Expected("error", "forbidden")
            self.answers[("delete", "ack by a moderator")] += 1
        adds = kind == "react" and frame["on"] and frame["emoji"] not in message.emojis
        if adds and len(message.emojis) >= MAX_EMOJIS:  # a 21st distinct emoji
            return Expected("error", "bad_request")
        return Expected("ack", None, conversation, seq, message.msg_id, fresh=True)

    def acknowledged(self, frame: Frame, expected: Expected) -> None:
        """The change was acked as expected: apply it."""
        if not expected.fresh:
            return
        self.acked[frame["id"]] = expected
        assert expected.conversation_id is not None and expected.seq is not None
        message = self.messages[(expected.conversation_id, expected.seq)]
        kind = frame["type"]
        if kind == "edit":
            message.body, message.edited = frame["body"], True
        elif kind == "delete":
            message.deleted = True
            message.emojis.clear()
        elif frame["on"]:
            message.emojis.add(frame["emoji"])
        else:
            message.emojis.discard(frame["emoji"])
        self.applied.append((expected.conversation_id, expected.seq, UPDATE_KIND[kind]))

    def check_history(self, conversation: str, stored: list[Frame]) -> list[str]:
        """Differences between the conversation's history and the model."""
        problems = []
        by_seq = {m["seq"]: m for m in stored}
        for (where, seq), message in sorted(self.messages.items()):
            if where != conversation:
                continue
            found = by_seq.get(seq)
            if found is None:
                problems.append(f"{where} seq {seq}: missing from history")
                continue
            want_reactions = {e: [self.user] for e in sorted(message.emojis)}
            have = (found.get("deleted"), found.get("body"), found.get("reactions") or {})
            want = (message.deleted, None if message.deleted else message.body, want_reactions)
            if have != want or (message.edited and not message.deleted and not found["edited_at"]):
                problems.append(f"{where} seq {seq}: history has {have}, expected {want}")
        return problems
