"""Frame fuzzing against the running server (CONTRACT.md, WebSocket).

Hypothesis draws batches of frames: valid ones of every type, near-valid
ones (a field dropped, added, of the wrong type or out of range), garbage,
deep nesting and odd unicode. Each batch goes over one real socket to a
``python app.py`` process in the embedded default. After every frame the
server must give exactly the answer the contract fixes (an ``ack``, a
``pong``, nothing, or an ``error`` with the right code and echoed id) and
then answer a ping: the connection stays open. The only close allowed is
1009 for a frame over 64 KiB. At the end the server log holds no traceback.

Each test runs its own server: a frame that wedges the server must fail
that test, not every test after it. Shrinking is off: the server keeps
state between examples, so a replayed smaller example would not mean the
same thing; the failure message shows the whole batch instead.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import websocket
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from imchat.client import ApiClient, Session
from imchat.wire.ids import direct_conversation_id
from tests.support.clients import register_users
from tests.support.server import EmbeddedServer
from tests.support.sockets import Closed, RawSocket

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
FIELDS = ("type", "id", "to", "group", "body", "conversation_id", "seq")
FUZZ = settings(
    deadline=None,
    database=None,
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
    """The users and groups the fuzzed frames may name."""

    sender: Session
    recipient: Session
    own_group: str  # the sender is a member
    foreign_group: str  # the sender is not


def make_world(server: EmbeddedServer) -> World:
    sender, recipient, stranger = register_users(server.base_url, 3)
    api = ApiClient(server.base_url)
    own = api.create_group(recipient.token, "fuzz-own", [sender.user_id])["group_id"]
    foreign = api.create_group(stranger.token, "fuzz-foreign", [recipient.user_id])["group_id"]
    return World(sender, recipient, own, foreign)


@pytest.fixture
def world(own_server: EmbeddedServer) -> World:
    return make_world(own_server)


@pytest.fixture(scope="module")
def shared_world(embedded_server: EmbeddedServer) -> World:
    """For the checks that cannot wedge the server: one server for all of them."""
    return make_world(embedded_server)


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

    delivered = st.builds(
        lambda conv, seq: ({"type": "delivered", "conversation_id": conv, "seq": seq}, "silence"),
        st.one_of(conversation_ids, st.just(f"g:{world.own_group}")),
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
        delivered,
        typing,
        st.just(({"type": "ping"}, "pong", ())),
    )


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
        frame[key] = draw(not_an_int if key == "seq" else not_a_string)
    elif mutation == "range":
        key = draw(st.sampled_from(sorted(frame)))
        frame[key] = draw(out_of_range[key])
    elif mutation == "both":
        frame.update(type="send", id="both", to=world.recipient.user_id)
        frame.update(group=world.own_group, body="b")
    else:
        frame["type"] = draw(
            st.one_of(st.text(max_size=10), not_a_string).filter(
                lambda t: t not in ("send", "delivered", "ping", "typing")
            )
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
    up to a second later. Every other frame is checked as before."""

    def __init__(self, base_url: str, token: str, user_id: str) -> None:
        super().__init__(base_url, token)
        self.user_id = user_id

    def recv(self, timeout: float = 5.0) -> dict[str, Any]:
        while True:
            frame = super().recv(timeout)
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


def check_batch(server: EmbeddedServer, user: Session, batch: list[Probe]) -> None:
    """Send each probe, check its answer, then prove the socket still works."""
    session = FuzzSocket(server, user)
    try:
        for index, probe in enumerate(batch):
            where = f"probe {index} of {batch}: {probe}"
            try:
                closed = _send_and_check(session.conn, probe)
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


def _send_and_check(conn: RawSocket, probe: Probe) -> bool:
    """True when the server closed the socket as the contract allows (1009)."""
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
    else:  # error, or too_large for an oversize frame
        assert answer["type"] == "error", answer
        assert answer["code"] in probe.codes, answer
        assert isinstance(answer["message"], str), answer
        assert answer.get("id") == probe.cid, answer
    return False


def fuzz(
    server: EmbeddedServer, user: Session, strategy: st.SearchStrategy[list[Probe]], examples: int
) -> None:
    @settings(FUZZ, max_examples=examples)
    @given(batch=strategy)
    def run(batch: list[Probe]) -> None:
        check_batch(server, user, batch)

    run()
    server.assert_no_traceback()


# ------------------------------------------------------------------- tests
def test_valid_frames_of_every_type_get_their_answer(
    own_server: EmbeddedServer, world: World
) -> None:
    fuzz(own_server, world.sender, batches(valid_probes(world)), examples=100)


def test_near_valid_frames_get_bad_request(own_server: EmbeddedServer, world: World) -> None:
    fuzz(own_server, world.sender, batches(near_valid_probes(world)), examples=200)


def test_garbage_gets_bad_request(own_server: EmbeddedServer, world: World) -> None:
    fuzz(own_server, world.sender, batches(garbage_probes), examples=200)


def test_deep_nesting_gets_bad_request_or_1009(own_server: EmbeddedServer, world: World) -> None:
    fuzz(own_server, world.sender, batches(nesting_probes(), most=3), examples=25)


def test_odd_unicode_is_accepted_and_lone_surrogates_refused(
    own_server: EmbeddedServer, world: World
) -> None:
    fuzz(own_server, world.sender, batches(unicode_probes(world)), examples=100)


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
