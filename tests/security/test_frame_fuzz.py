"""Frame fuzzing against the running server (CONTRACT.md, WebSocket).

Hypothesis draws batches of frames: valid ones of every type (``send``,
``delivered``, ``read``, ``typing``, ``edit``, ``delete``, ``react``, ``ping``),
near-valid ones (a field dropped, added, of the wrong type or out of range),
garbage, deep nesting and odd unicode. Each batch goes over one real socket
to a ``python app.py`` process in the embedded default. After every frame the
server must give exactly the answer the contract fixes (an ``ack``, a
``pong``, nothing, or an ``error`` with the right code and echoed id) and
then answer a ping: the connection stays open. The only close allowed is
1009 for a frame over 64 KiB. At the end the server log holds no traceback.

The answer to a valid ``edit``, ``delete`` or ``react`` depends on what came
before (whose message it is, whether it was deleted, the emoji already on
it, an id already acked): ``frame_model.Model`` follows every acked send and
change and names it. At the end of each test history must hold exactly the
model's messages (bodies, deletes, reactions) and the other participant's
open connection must have got one ``update`` per change applied: nothing
accepted is lost.

Seeded: every run draws the same examples (``derandomize``); set
``IMCHAT_FUZZ_SEED`` to an integer to draw others, and the same value again
to reproduce them.

Each test runs its own server: a frame that wedges the server must fail
that test, not every test after it. Shrinking is off: the server keeps
state between examples, so a replayed smaller example would not mean the
same thing; the failure message shows the whole batch instead.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import websocket
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

from imchat.client import ApiClient, ChatConnection, Session
from imchat.wire.ids import direct_conversation_id
from tests.support.clients import register_users
from tests.support.server import EmbeddedServer
from tests.support.sockets import Closed, RawSocket

from .frame_model import CHANGES, Expected, Model

pytestmark = [
    pytest.mark.e2e,
    # The fuzzing client drops sockets the server closed (1009) or that a
    # failed example left behind; the garbage collector's complaint about them
    # is about this client, not the server under test.
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
    # A failing example of 100 KB frames: report the failure, not its size.
    pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisWarning"),
]

MAX_FRAME = 64 * 1024
ACK_TIMEOUT = 5.0
FIELDS = ("type", "id", "to", "group", "body", "conversation_id", "seq", "emoji", "on")
TYPES = ("send", "delivered", "read", "ping", "typing", *CHANGES)
SEED = os.environ.get("IMCHAT_FUZZ_SEED")
FUZZ = settings(
    deadline=None,
    database=None,
    derandomize=SEED is None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
        HealthCheck.function_scoped_fixture,
    ],
)

Frame = dict[str, Any]


@dataclass(frozen=True)
class Probe:
    """One frame to send and the answer the contract fixes for it.

    ``expect`` is ``ack``, ``pong``, ``silence`` (nothing at all) or
    ``error``; ``codes`` are the error codes allowed; ``cid`` is the id an
    ack or error must carry.
    """

    raw: str | bytes
    expect: str
    codes: tuple[str, ...] = ()
    cid: str | None = None

    def __repr__(self) -> str:
        # Hypothesis prints failing examples: a 200 KB frame would drown the report.
        raw = self.raw if len(self.raw) <= 300 else self.raw[:150] + "..." + self.raw[-50:]
        return f"Probe({raw!r}, {self.expect}, {self.codes}, cid={self.cid!r})"


@dataclass(frozen=True)
class World:
    """The users, groups and messages the fuzzed frames may name, the model of
    what the changes must get, and the recipient's open connection, which
    sees every ``update``."""

    sender: Session
    recipient: Session
    own_group: str  # the sender is a member
    foreign_group: str  # the sender is not
    moderated_group: str  # the sender owns it: may delete anyone's message there
    model: Model
    observer: ChatConnection  # the recipient's, open for the whole test
    seeded: tuple[tuple[str, int], ...]  # (conversation, seq) of the seeded messages

    @property
    def direct(self) -> str:
        return direct_conversation_id(self.sender.user_id, self.recipient.user_id)

    def conversations(self) -> list[str]:
        """Where the sender takes part, then where it does not (but which exist)."""
        return [self.direct, f"g:{self.own_group}", f"g:{self.moderated_group}",
                *sorted(self.model.others)]  # fmt: skip


SEEDED = 4  # messages of each author in each conversation


def make_world(server: EmbeddedServer) -> World:
    """Three users, three groups, a few messages of each author everywhere;
    the sender has confirmed them all, so each fuzzing socket starts synced 0."""
    sender, recipient, stranger = register_users(server.base_url, 3)
    api = ApiClient(server.base_url)
    own = api.create_group(recipient.token, "fuzz-own", [sender.user_id])["group_id"]
    foreign = api.create_group(stranger.token, "fuzz-foreign", [recipient.user_id])["group_id"]
    moderated = api.create_group(sender.token, "fuzz-mod", [recipient.user_id])["group_id"]
    model = Model(sender.user_id, roles={own: "member", moderated: "owner"})
    observer = ChatConnection(server.base_url, recipient.token, timeout=10)
    observer.wait_synced()
    mine = ChatConnection(server.base_url, sender.token, timeout=10)
    theirs = ChatConnection(server.base_url, stranger.token, timeout=10)
    try:
        mine.wait_synced()
        theirs.wait_synced()
        targets = [({"to": recipient.user_id}, {"to": sender.user_id}, None),
                   ({"group": own}, {"group": own}, own),
                   ({"group": moderated}, {"group": moderated}, moderated)]  # fmt: skip
        sent = []  # all at once, then their acks: seeding stays quick
        for to_theirs, to_mine, group in targets:
            for n in range(SEEDED):
                for conn, author, target in ((mine, sender, to_theirs),
                                             (observer, recipient, to_mine)):  # fmt: skip
                    body = f"seed {n} of {author.user_id[:6]}"
                    sent.append((conn, author, body, group, conn.send_nowait(body, **target)))
        sent.append((theirs, stranger, "theirs", foreign, theirs.send_nowait("t", group=foreign)))
        sent.append((theirs, stranger, "theirs", None, theirs.send_nowait("t", recipient.user_id)))
        last: dict[str, int] = {}
        for conn, author, body, group, cid in sent:
            ack = conn.wait_ack(cid)
            last[ack["conversation_id"]] = max(int(ack["seq"]), last.get(ack["conversation_id"], 0))
            if author is stranger:  # exists without the sender: react there is forbidden
                model.others.add(ack["conversation_id"])
            else:
                model.seeded(ack, author.user_id, body, group)
                model.participant.add(ack["conversation_id"])
        # Everyone has it all: no socket of the tests starts with pending messages.
        for conversation in model.participant:
            mine.confirm(conversation, last[conversation])
        mine.ping()  # embedded, the marks are written while the frame is handled
        mine.close()
        # The recipient's only once the sender is gone, and the receipts sent
        # (the gateway's 0.1 s tick): none may reach a fuzzing socket.
        for conversation, seq in last.items():
            observer.confirm(conversation, seq)
        observer.ping()
        time.sleep(0.3)
    finally:
        mine.close()
        theirs.close()
    seeded = tuple(sorted(model.messages))  # fixed: strategies must not change as sends add
    return World(sender, recipient, own, foreign, moderated, model, observer, seeded)


@pytest.fixture
def world(own_server: EmbeddedServer) -> Iterator[World]:
    made = make_world(own_server)
    yield made
    made.observer.close()


@pytest.fixture(scope="module")
def shared_world(embedded_server: EmbeddedServer) -> Iterator[World]:
    """For the checks that cannot wedge the server: one server for all of them."""
    made = make_world(embedded_server)
    yield made
    made.observer.close()


# -------------------------------------------------------------- strategies
# Characters UTF-8 can hold: every code point but the surrogates (NUL included).
storable_chars = st.characters(codec="utf-8")
ODD_TEXT = [
    "\u202eevil\u202c",  # right-to-left override
    "zero\u200bwidth\u200d",
    "nul\x00byte",
    "\ufeffbom",
    "e\u0301\u0301\u0301",  # stacked combining marks
    "\U0001f600\U0010ffff",
    "\u0645\u0631\u062d\u0628\u0627",  # Arabic, right to left
    "line\u2028sep\u2029",
    "\r\n\t",
]
cids = st.one_of(
    st.text(storable_chars, min_size=1, max_size=64),
    st.sampled_from(["c", "i" * 64, *ODD_TEXT]),
)
bodies = st.one_of(
    st.text(storable_chars, min_size=1, max_size=200),
    st.sampled_from(["b", "b" * 4000, "\U0001f600" * 4000, *ODD_TEXT]),
)
unknown_ids = st.one_of(
    st.text(storable_chars, min_size=1, max_size=64),
    st.builds(lambda: uuid.uuid4().hex),
    st.sampled_from(["x" * 64, *ODD_TEXT]),
)
conversation_ids = st.text(storable_chars, min_size=1, max_size=80)
seqs = st.integers(min_value=1, max_value=2**63 - 1)
emojis = st.one_of(
    st.sampled_from(
        ["\U0001f44d", "\u2764\ufe0f", "\U0001f602", "\U0001f44d\U0001f3fd", "+1", "e" * 16]
    ),
    st.text(storable_chars, min_size=1, max_size=16),
)
json_leaves = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
json_values = st.recursive(
    json_leaves,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=10,
)


def _encode(frame: Any) -> str:
    return json.dumps(frame)


def valid_frames(world: World) -> st.SearchStrategy[tuple[Frame, str, tuple[str, ...]]]:
    """(frame, expected answer, allowed error codes) for valid frames of every type."""

    def send(
        target: str, to: st.SearchStrategy[str], expect: str, codes: tuple[str, ...] = ()
    ) -> st.SearchStrategy[tuple[Frame, str, tuple[str, ...]]]:
        return st.builds(
            lambda cid, dest, body: (
                {"type": "send", "id": cid, target: dest, "body": body},
                expect,
                codes,
            ),
            cids,
            to,
            bodies,
        )

    marks = st.builds(
        lambda kind, conv, seq: ({"type": kind, "conversation_id": conv, "seq": seq}, "silence"),
        st.sampled_from(["delivered", "read"]),
        st.one_of(conversation_ids, st.sampled_from(world.conversations())),
        seqs,
    ).map(lambda pair: (*pair, ()))
    # Relayed to the others (here the recipient), never answered: silence for the typer.
    direct = direct_conversation_id(world.sender.user_id, world.recipient.user_id)
    typing = st.builds(
        lambda conv: ({"type": "typing", "conversation_id": conv}, "silence", ()),
        st.one_of(conversation_ids, st.sampled_from([direct, f"g:{world.own_group}"])),
    )
    return st.one_of(
        send("to", st.just(world.recipient.user_id), "ack"),
        send("to", unknown_ids, "error", ("not_found",)),
        send("group", st.just(world.own_group), "ack"),
        send("group", st.just(world.foreign_group), "error", ("forbidden",)),
        send("group", unknown_ids, "error", ("not_found",)),
        marks,
        typing,
        change_frames(world),
        st.just(({"type": "ping"}, "pong", ())),
    )


def change_frames(world: World) -> st.SearchStrategy[tuple[Frame, str, tuple[str, ...]]]:
    """``edit``, ``delete`` and ``react`` of the seeded messages and of the
    fuzzer's own sends (low seqs), of seqs no message has, in conversations the
    sender is in, is not in, and that do not exist. The answer is the model's
    (``change``): it depends on what the batches did before."""
    seeded = st.sampled_from(world.seeded)
    known, low = st.sampled_from(world.conversations()), st.integers(1, 2 * SEEDED + 8)
    elsewhere = st.tuples(st.sampled_from(sorted(world.model.others)), low)  # not the sender's
    target = st.one_of(seeded, seeded, st.tuples(known, low), elsewhere,
                       st.tuples(conversation_ids, seqs))  # fmt: skip
    head = st.builds(lambda cid, where: {"id": cid, "conversation_id": where[0], "seq": where[1]},
                     cids, target)  # fmt: skip
    edit = st.builds(lambda h, body: {"type": "edit", **h, "body": body}, head, bodies)
    delete = st.builds(lambda h: {"type": "delete", **h}, head)
    react = st.builds(lambda h, emoji, on: {"type": "react", **h, "emoji": emoji, "on": on},
                      head, emojis, st.booleans())  # fmt: skip
    return st.one_of(edit, delete, react).map(lambda frame: (frame, "change", ()))


def valid_probes(world: World) -> st.SearchStrategy[Probe]:
    return valid_frames(world).map(lambda t: Probe(_encode(t[0]), t[1], t[2], t[0].get("id")))


# Values that no field of any frame accepts in place of a string / an integer.
not_a_string = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.lists(json_leaves, max_size=3),
    st.dictionaries(st.text(max_size=5), json_leaves, max_size=3),
)
not_a_bool = st.one_of(
    st.none(),
    st.integers(),
    st.floats(),
    st.text(max_size=10),
    st.lists(json_leaves, max_size=3),
    st.dictionaries(st.text(max_size=5), json_leaves, max_size=3),
)
not_an_int = st.one_of(
    st.none(),
    st.booleans(),
    st.floats(),
    st.text(max_size=10),
    st.lists(json_leaves, max_size=3),
    st.integers(max_value=0),
    st.sampled_from([2**63, 2**64, 10**30, -(2**63) - 1, 1.0, 1e400]),
)
out_of_range = {
    "id": st.sampled_from(["", "i" * 65]),
    "to": st.sampled_from(["", "t" * 65]),
    "group": st.sampled_from(["", "g" * 65]),
    "body": st.sampled_from(["", "b" * 4001, "\U0001f600" * 4001]),
    "conversation_id": st.sampled_from(["", "c" * 81]),
    "seq": st.sampled_from([0, -1, -(2**63), 2**63, 10**30]),
    "emoji": st.sampled_from(["", "e" * 17, "\U0001f600" * 17]),
    "on": st.sampled_from([0, 1, "true", "false", None, [], {}]),
    "type": st.sampled_from(["", "SEND", "Ping", "pong", "ack", "msg", "error", "send "]),
}


@st.composite
def near_valid_probes(draw: st.DrawFn, world: World) -> Probe:
    """A valid frame with one thing wrong: always a ``bad_request``."""
    frame, _, _ = draw(valid_frames(world))
    frame = dict(frame)
    mutation = draw(st.sampled_from(["drop", "extra", "type", "range", "both", "kind"]))
    if mutation == "drop":
        del frame[draw(st.sampled_from(sorted(frame)))]
    elif mutation == "extra":
        key = draw(st.text(max_size=12).filter(lambda k: k not in FIELDS))
        frame[key] = draw(json_values)
    elif mutation == "type":
        key = draw(st.sampled_from(sorted(frame)))
        wrong = {"seq": not_an_int, "on": not_a_bool}.get(key, not_a_string)
        frame[key] = draw(wrong)
    elif mutation == "range":
        key = draw(st.sampled_from(sorted(frame)))
        frame[key] = draw(out_of_range[key])
    elif mutation == "both":
        frame.update(type="send", id="both", to=world.recipient.user_id)
        frame.update(group=world.own_group, body="b")
    else:
        frame["type"] = draw(
            st.one_of(st.text(max_size=10), not_a_string).filter(lambda t: t not in TYPES)
        )
    cid = frame.get("id") if isinstance(frame.get("id"), str) else None
    return Probe(_encode(frame), "error", ("bad_request",), cid)


def _not_an_object(text: str) -> bool:
    try:
        return not isinstance(json.loads(text), dict)
    except (ValueError, RecursionError):
        return True


garbage_probes = st.one_of(
    st.text(max_size=300).filter(_not_an_object),
    st.binary(max_size=300).map(lambda b: b.decode("latin-1")).filter(_not_an_object),
    st.binary(min_size=1, max_size=300).filter(
        lambda b: _not_an_object(b.decode("utf-8", "replace"))
    ),  # a binary frame
    json_values.filter(lambda v: not isinstance(v, dict)).map(json.dumps),
    st.sampled_from(["", " ", "null", "[]", "{", "}", '{"type":', "\x00", "\ufeff{}"]),
).map(lambda raw: Probe(raw, "error", ("bad_request",)))


def _nested(depth: int, shape: str) -> str:
    if shape == "array":
        return "[" * depth + "]" * depth
    if shape == "object":
        return '{"a":' * depth + "1" + "}" * depth
    return '{"type":"send","id":"deep","to":"x","body":' + "[" * depth + "]" * depth + "}"


@st.composite
def nesting_probes(draw: st.DrawFn) -> Probe:
    """Deeply nested JSON: an error, or (over 64 KiB) too_large or close 1009."""
    shape = draw(st.sampled_from(["array", "object", "in-a-send"]))
    depth = draw(st.sampled_from([100, 1_000, 5_000, 10_000, 30_000, 100_000]))
    raw = _nested(depth, shape)
    # Past the JSON parser's nesting limit (~1,000) nothing of the frame can be
    # read, its id included: the error then carries no id.
    cid = "deep" if shape == "in-a-send" and depth < 900 else None
    if len(raw.encode()) > MAX_FRAME:
        return Probe(raw, "oversize", ("too_large",), cid)
    return Probe(raw, "error", ("bad_request",), cid)


SURROGATES = ["\\ud800", "\\udfff", "a\\udbff", "\\udc00z"]


@st.composite
def unicode_probes(draw: st.DrawFn, world: World) -> Probe:
    """Odd but valid text is accepted; a lone surrogate (escaped in the JSON) is
    text no database can store, so it must be refused with ``bad_request``."""
    frame, expect, codes = draw(valid_frames(world))
    strings = [k for k, v in frame.items() if k != "type" and isinstance(v, str)]
    if not strings or draw(st.booleans()):
        # Odd but storable: the frame's answer does not change... unless the odd
        # text went into an id the server must look up, which then is unknown.
        return Probe(_encode(frame), expect, codes, frame.get("id"))
    key = draw(st.sampled_from(strings))
    marker = "\x00SURROGATE\x00"
    frame[key] = marker
    raw = _encode(frame).replace(json.dumps(marker)[1:-1], draw(st.sampled_from(SURROGATES)))
    loaded = json.loads(raw)
    cid = loaded.get("id") if isinstance(loaded.get("id"), str) else None
    return Probe(raw, "error", ("bad_request",), cid)


def batches(probes: st.SearchStrategy[Probe], most: int = 6) -> st.SearchStrategy[list[Probe]]:
    return st.lists(probes, min_size=1, max_size=most)


# ---------------------------------------------------------------- checking
class OwnSocket(RawSocket):
    """A socket of the fuzzing user that passes over receipts of the user's own
    marks: a ``delivered`` of an earlier batch's socket may move them, and the
    contract sends that to the user's other connections, this one included,
    up to a second later. It passes over ``update`` frames too: every change
    is announced to all of its author's connections, this one included, in no
    fixed order with its ack (the recipient's observer counts them). Every
    other frame is checked as before."""

    def __init__(self, base_url: str, token: str, user_id: str) -> None:
        super().__init__(base_url, token)
        self.user_id = user_id

    def recv(self, timeout: float = 5.0) -> dict[str, Any]:
        while True:
            frame = super().recv(timeout)
            if frame.get("type") == "update":
                continue
            if frame.get("type") != "receipt" or frame.get("user_id") != self.user_id:
                return frame


class FuzzSocket:
    """One socket per batch; replaced after an allowed 1009 close."""

    def __init__(self, server: EmbeddedServer, user: Session) -> None:
        self.server, self.user = server, user
        self.conn = self._open()

    def _open(self) -> RawSocket:
        conn = OwnSocket(self.server.base_url, self.user.token, self.user.user_id)
        first = conn.recv()
        assert first["type"] == "synced", first
        return conn

    def reopen(self) -> None:
        self.conn.ws.shutdown()
        self.conn = self._open()

    def close(self) -> None:
        try:
            self.conn.close()
        except (OSError, websocket.WebSocketException):
            self.conn.ws.shutdown()


def check_batch(
    server: EmbeddedServer, user: Session, batch: list[Probe], model: Model | None = None
) -> None:
    """Send each probe, check its answer, then prove the socket still works."""
    session = FuzzSocket(server, user)
    try:
        for index, probe in enumerate(batch):
            where = f"probe {index} of {batch}: {probe}"
            try:
                closed = _send_and_check(session.conn, probe, model)
            except (AssertionError, Closed, websocket.WebSocketException) as err:
                raise AssertionError(f"{where}\n{type(err).__name__}: {err}") from None
            if closed:
                session.reopen()
                continue
            try:
                session.conn.ping()
            except (AssertionError, Closed, websocket.WebSocketException) as err:
                raise AssertionError(f"no pong after {where}: {err}") from None
    finally:
        session.close()


def _send_and_check(conn: RawSocket, probe: Probe, model: Model | None = None) -> bool:
    """True when the server closed the socket as the contract allows (1009)."""
    expected: Expected | None = None
    if probe.expect == "change":  # what it must get depends on what came before
        assert model is not None, "a change frame needs the model"
        expected = model.expect(json.loads(probe.raw))
    try:
        if isinstance(probe.raw, bytes):
            conn.ws.send_binary(probe.raw)
        else:
            conn.send(probe.raw)
    except (BrokenPipeError, ConnectionResetError):
        # The server closed (1009) while the rest of an oversize frame was
        # still on its way: the contract's close, seen from the sending side.
        assert probe.expect == "oversize", "the server cut a frame under 64 KiB"
        return True
    if probe.expect == "silence":
        return False  # the ping that follows must get the very next frame
    try:
        answer = conn.recv(ACK_TIMEOUT)
    except Closed as closed:
        assert probe.expect == "oversize" and closed.code == 1009, f"closed: {closed}"
        return True
    except (BrokenPipeError, ConnectionResetError):
        # The server's 1009 close arrived and it shut the connection down before
        # the client's close reply: still the contract's close, on the client side.
        assert probe.expect == "oversize", "the server cut a frame under 64 KiB"
        return True
    if probe.expect == "pong":
        assert answer == {"type": "pong"}, answer
    elif probe.expect == "ack":
        assert answer["type"] == "ack" and answer["id"] == probe.cid, answer
        assert isinstance(answer["seq"], int) and answer["seq"] >= 1, answer
        if model is not None:
            sent = json.loads(probe.raw)
            model.seeded(answer, model.user, sent["body"], sent.get("group"))
    elif expected is not None:
        _check_change(answer, probe, expected, model)
    else:  # error, or too_large for an oversize frame
        assert answer["type"] == "error", answer
        assert answer["code"] in probe.codes, answer
        assert isinstance(answer["message"], str), answer
        assert answer.get("id") == probe.cid, answer
    return False


def _check_change(answer: Frame, probe: Probe, expected: Expected, model: Model | None) -> None:
    assert model is not None
    if expected.answer == "error":
        assert (answer["type"], answer.get("code")) == ("error", expected.code), answer
        assert answer.get("id") == probe.cid and isinstance(answer["message"], str), answer
        return
    assert answer["type"] == "ack" and answer["id"] == probe.cid, answer
    got = (answer["conversation_id"], answer["seq"], answer["msg_id"])
    assert got == (expected.conversation_id, expected.seq, expected.msg_id), answer
    assert isinstance(answer["ts"], int), answer
    model.acknowledged(json.loads(probe.raw), expected)


def assert_nothing_lost(server: EmbeddedServer, world: World, timeout: float = 10.0) -> None:
    """History holds every accepted send and change, and the recipient's open
    connection got one ``update`` per change applied, no more."""
    model = world.model
    want = sorted(model.applied)
    got: list[tuple[str, int, str]] = []
    deadline = time.monotonic() + timeout
    while len(got) < len(want) and time.monotonic() < deadline:
        with contextlib.suppress(queue.Empty):
            update = world.observer.updates.get(timeout=0.1)
            assert update["by"] == model.user, update
            got.append((update["conversation_id"], update["seq"], update["kind"]))
    with contextlib.suppress(queue.Empty):  # and nothing more
        extra = world.observer.updates.get(timeout=0.3)
        got.append((extra["conversation_id"], extra["seq"], extra["kind"]))
    assert sorted(got) == want, "the recipient's updates differ from the changes applied"
    api = ApiClient(server.base_url)
    problems = []
    for conversation in sorted(model.participant):
        problems += model.check_history(
            conversation, api.all_messages(world.sender.token, conversation)
        )
    assert not problems, "\n".join(problems)


def fuzz(
    server: EmbeddedServer, world: World, strategy: st.SearchStrategy[list[Probe]], examples: int
) -> None:
    @settings(FUZZ, max_examples=examples)
    @given(batch=strategy)
    def run(batch: list[Probe]) -> None:
        check_batch(server, world.sender, batch, world.model)

    (seed(int(SEED))(run) if SEED is not None else run)()
    server.assert_no_traceback()
    assert_nothing_lost(server, world)


# ------------------------------------------------------------------- tests
def test_valid_frames_of_every_type_get_their_answer(
    own_server: EmbeddedServer, world: World
) -> None:
    fuzz(own_server, world, batches(valid_probes(world)), examples=100)


def change_probes(world: World) -> st.SearchStrategy[Probe]:
    """Changes mostly, with sends (new messages to change) and pings among them."""
    sends = valid_frames(world).filter(lambda t: t[0]["type"] in ("send", "ping"))
    frames = st.one_of(change_frames(world), change_frames(world), sends)
    return frames.map(lambda t: Probe(_encode(t[0]), t[1], t[2], t[0].get("id")))


def test_edits_deletes_and_reactions_get_their_answer_and_none_is_lost(
    own_server: EmbeddedServer, world: World
) -> None:
    """Every answer the contract names for the three change frames is reached:
    the model's tally proves the fuzzing got past the easy refusals."""
    fuzz(own_server, world, batches(change_probes(world)), examples=80)
    reached = set(world.model.answers)
    for kind in ("edit", "delete", "react"):
        assert {(kind, "ack"), (kind, "not_found")} <= reached, world.model.answers
    assert {("edit", "forbidden"), ("delete", "forbidden"), ("react", "forbidden")} <= reached
    assert world.model.applied, "no change was applied"


def test_who_may_change_what(own_server: EmbeddedServer, world: World) -> None:
    """The rules one by one, as the fuzzing may miss one: a group's owner deletes
    anyone's message there, a member does not; only the sender edits; a resend of
    an applied delete gets its ack again; a deleted message is gone for changes."""
    model, recipient = world.model, world.recipient.user_id

    def theirs(conversation: str) -> int:
        return min(s for (c, s), m in model.messages.items()
                   if c == conversation and m.author == recipient)  # fmt: skip

    moderated, own = f"g:{world.moderated_group}", f"g:{world.own_group}"
    frames = [
        ("delete", "mod", moderated, theirs(moderated), {}),  # the owner: ack
        ("delete", "member", own, theirs(own), {}),  # a member: forbidden
        ("edit", "other", world.direct, theirs(world.direct), {"body": "mine now"}),  # forbidden
        ("delete", "mod", world.direct, 1, {}),  # the same id: the first ack again
        ("edit", "late", moderated, theirs(moderated), {"body": "x"}),  # deleted: not_found
        ("react", "gone", moderated, theirs(moderated), {"emoji": "+1", "on": True}),
    ]
    frames += [("react", "away", c, 1, {"emoji": "+1", "on": True}) for c in sorted(model.others)]
    batch = [
        Probe(_encode({"type": kind, "id": cid, "conversation_id": c, "seq": seq, **rest}),
              "change", (), cid)
        for kind, cid, c, seq, rest in frames
    ]  # fmt: skip
    check_batch(own_server, world.sender, batch, model)
    assert model.answers == {
        ("delete", "ack by a moderator"): 1, ("delete", "ack"): 2, ("delete", "forbidden"): 1,
        ("edit", "forbidden"): 1, ("edit", "not_found"): 1, ("react", "not_found"): 1,
        ("react", "forbidden"): len(model.others),
    }, model.answers  # fmt: skip
    assert_nothing_lost(own_server, world)


def test_a_21st_distinct_emoji_is_refused(own_server: EmbeddedServer, world: World) -> None:
    """Found rarely by chance: 20 distinct emoji on one message, then a 21st."""
    conversation = world.direct
    target = {"conversation_id": conversation, "seq": 1}
    frames = [{"type": "react", "id": f"r{n}", **target, "emoji": f"e{n}", "on": True}
              for n in range(21)]  # fmt: skip
    frames += [
        {"type": "react", "id": "again", **target, "emoji": "e3", "on": True},  # present: fine
        {"type": "react", "id": "off", **target, "emoji": "e4", "on": False},
        {"type": "react", "id": "now", **target, "emoji": "e20", "on": True},  # room again
    ]
    batch = [Probe(_encode(f), "change", (), f["id"]) for f in frames]
    check_batch(own_server, world.sender, batch, world.model)
    assert world.model.answers[("react", "bad_request")] == 1, world.model.answers
    assert world.model.answers[("react", "ack")] == 23, world.model.answers
    assert_nothing_lost(own_server, world)


def test_near_valid_frames_get_bad_request(own_server: EmbeddedServer, world: World) -> None:
    fuzz(own_server, world, batches(near_valid_probes(world)), examples=200)


def test_garbage_gets_bad_request(own_server: EmbeddedServer, world: World) -> None:
    fuzz(own_server, world, batches(garbage_probes), examples=200)


def test_deep_nesting_gets_bad_request_or_1009(own_server: EmbeddedServer, world: World) -> None:
    fuzz(own_server, world, batches(nesting_probes(), most=3), examples=25)


def test_odd_unicode_is_accepted_and_lone_surrogates_refused(
    own_server: EmbeddedServer, world: World
) -> None:
    fuzz(own_server, world, batches(unicode_probes(world)), examples=100)


# Frames found by the fuzzing above, kept as plain regression checks that
# name the bug (each on a server of its own: some of them wedge it).
REGRESSIONS: dict[str, Callable[[World], str]] = {
    "seq above 2**63": lambda w: _encode(
        {"type": "delivered", "conversation_id": "d:a", "seq": 10**30}
    ),
    "type is a list": lambda w: '{"type": ["send"]}',
    "type is an object": lambda w: '{"type": {"a": 1}}',
    "10,000 nested arrays": lambda w: _nested(10_000, "array"),
    "surrogate in to": lambda w: '{"type":"send","id":"s1","to":"\\ud800","body":"hi"}',
    "surrogate in group": lambda w: '{"type":"send","id":"s2","group":"\\ud800","body":"hi"}',
    "surrogate in conversation_id": lambda w: (
        '{"type":"delivered","conversation_id":"\\ud800","seq":1}'
    ),
}


@pytest.mark.parametrize("case", list(REGRESSIONS))
def test_found_frames_get_bad_request(
    case: str, embedded_server: EmbeddedServer, shared_world: World
) -> None:
    mark = embedded_server.log_mark()
    raw = REGRESSIONS[case](shared_world)
    loaded: Any = None
    with contextlib.suppress(ValueError, RecursionError):
        loaded = json.loads(raw)
    cid = loaded.get("id") if isinstance(loaded, dict) else None
    check_batch(embedded_server, shared_world.sender, [Probe(raw, "error", ("bad_request",), cid)])
    embedded_server.assert_no_traceback(since=mark)


@pytest.mark.parametrize("field", ["body", "id"])
def test_an_unstorable_send_does_not_stop_delivery_for_everyone(
    field: str, own_server: EmbeddedServer, world: World
) -> None:
    """A lone surrogate in a send's body or id must be refused at the gateway: once
    on the bus no database can store it, and the consumer retries that batch
    forever, so nobody's message is acked or delivered again."""
    fields = {"id": "poison", "to": world.recipient.user_id, "body": "hi"}
    fields[field] = "\x00MARK\x00"
    raw = _encode({"type": "send", **fields}).replace("\\u0000MARK\\u0000", "\\ud800")
    sender = RawSocket(own_server.base_url, world.sender.token)
    try:
        sender.recv_type("synced")
        sender.send(raw)
        answer = sender.recv(ACK_TIMEOUT)
        assert (answer["type"], answer.get("code")) == ("error", "bad_request"), answer
    except websocket.WebSocketTimeoutException:
        pass  # no answer at all: the check below shows what it cost
    finally:
        sender.ws.shutdown()
    # Someone else's ordinary message afterwards is still acked.
    other = RawSocket(own_server.base_url, world.recipient.token)
    try:
        other.recv_type("synced")
        other.send({"type": "send", "id": "after", "to": world.sender.user_id, "body": "ok"})
        try:
            ack = other.recv(ACK_TIMEOUT)
        except websocket.WebSocketTimeoutException:
            pytest.fail(f"no ack for an ordinary message after a surrogate in the {field}")
        assert (ack["type"], ack["id"]) == ("ack", "after"), ack
    finally:
        other.ws.shutdown()
    own_server.assert_no_traceback()


@pytest.fixture
def sender_socket(embedded_server: EmbeddedServer, shared_world: World) -> Iterator[RawSocket]:
    conn = RawSocket(embedded_server.base_url, shared_world.sender.token)
    conn.recv_type("synced")
    yield conn
    conn.ws.shutdown()


def test_a_frame_of_exactly_64_kib_is_answered_and_one_byte_more_may_close(
    sender_socket: RawSocket, embedded_server: EmbeddedServer
) -> None:
    """The boundary: 65,536 bytes is not "over 64 KiB", 65,537 is."""
    mark = embedded_server.log_mark()
    at_limit = '{"type":"ping","pad":"' + "x" * (MAX_FRAME - 24) + '"}'
    assert len(at_limit) == MAX_FRAME
    sender_socket.send(at_limit)
    error = sender_socket.recv_type("error")
    assert error["code"] == "bad_request"  # an unknown field, but the frame was read
    sender_socket.ping()
    sender_socket.send(at_limit[:-2] + 'x"}')
    try:
        error = sender_socket.recv()
        assert (error["type"], error["code"]) == ("error", "too_large")
    except Closed as closed:
        assert closed.code == 1009
    embedded_server.assert_no_traceback(since=mark)
