"""The typed wire: one encode and one decode per record, tolerant across releases."""

from __future__ import annotations

import json

import pytest

from imchat.wire.batch import RESYNC, AckDelivery, FramePush, GatewayBatch, MessagePush
from imchat.wire.bus import (
    WIRE_VERSION,
    MembershipChange,
    MessageChange,
    MessageEnvelope,
    decode_message_record,
)
from imchat.wire.codec import WireError
from imchat.wire.frames import AckFrame, ErrorFrame, EventFrame, MsgFrame, SyncedFrame

pytestmark = pytest.mark.unit

ENVELOPE = MessageEnvelope(
    msg_id="m1",
    cid="c1",
    sender="alice",
    conversation_id="d:alice:bob",
    body="hi",
    ts=1700000000000,
    gateway="gw-1",
    conn="conn-1",
    to="bob",
)
# What release 1 put on the bus (built by hand there): no "v", no "group".
RELEASE_1_ENVELOPE = {
    "msg_id": "m1",
    "cid": "c1",
    "from": "alice",
    "conversation_id": "d:alice:bob",
    "body": "hi",
    "ts": 1700000000000,
    "gateway": "gw-1",
    "conn": "conn-1",
    "to": "bob",
}


def test_an_envelope_round_trips_with_the_release_1_keys() -> None:
    encoded = json.loads(ENVELOPE.encode())
    assert encoded == {**RELEASE_1_ENVELOPE, "v": WIRE_VERSION}
    assert MessageEnvelope.decode(ENVELOPE.encode()) == ENVELOPE
    assert ENVELOPE.dedup_key == "alice:c1" and ENVELOPE.kind == "direct"


def test_a_release_1_envelope_decodes_as_version_1() -> None:
    decoded = MessageEnvelope.decode(json.dumps(RELEASE_1_ENVELOPE))
    assert decoded == ENVELOPE and decoded.v == 1 and decoded.group is None


def test_unknown_fields_of_a_newer_release_are_ignored() -> None:
    newer = {**RELEASE_1_ENVELOPE, "v": 7, "reply_to": "m0", "extra": {"x": [1]}}
    decoded = MessageEnvelope.decode(json.dumps(newer))
    assert decoded.msg_id == "m1" and decoded.v == 7 and decoded.body == "hi"


def test_a_missing_required_field_is_an_error_not_a_default() -> None:
    for key in ("msg_id", "cid", "from", "conversation_id", "gateway"):
        partial = {k: v for k, v in RELEASE_1_ENVELOPE.items() if k != key}
        with pytest.raises(WireError, match=key):
            MessageEnvelope.decode(json.dumps(partial))


@pytest.mark.parametrize("raw", [b"not json", b"[1, 2]", b'"text"', b"[" * 100_000])
def test_bytes_that_are_no_record_are_a_wire_error(raw: bytes) -> None:
    with pytest.raises(WireError):
        MessageEnvelope.decode(raw)


def test_a_membership_change_defaults_its_optional_fields() -> None:
    minimal = {"event": "member_added", "group_id": "g1", "user_id": "bob"}
    change = MembershipChange.decode(json.dumps(minimal))
    assert change.member_ids == [] and change.role is None and change.member_count is None
    full = MembershipChange("member_added", "g1", "bob", "member", "alice", 5, ["alice", "bob"], 2)
    assert MembershipChange.decode(full.encode()) == full


def test_a_message_change_is_told_from_an_envelope_and_an_older_consumer_drops_it() -> None:
    edit = MessageChange(
        "edit", "e1", "alice", "d:alice:bob", 3, "m1", 1700000000001, "gw-1", "conn-1", body="x"
    )
    encoded = json.loads(edit.encode())
    assert encoded["record"] == "change" and "from" not in encoded and "emoji" not in encoded
    assert decode_message_record(edit.encode()) == edit
    assert decode_message_record(ENVELOPE.encode()) == ENVELOPE
    assert decode_message_record(json.dumps(RELEASE_1_ENVELOPE)) == ENVELOPE
    # A consumer of a release before changes decodes every record of a message
    # topic as an envelope: a change is refused, and so dropped, not delivered.
    with pytest.raises(WireError, match="from"):
        MessageEnvelope.decode(edit.encode())
    react = MessageChange(
        "react", "r1", "bob", "g:g1", 1, "m2", 1, "gw", "c", "g1", emoji="👍", on=False
    )
    assert decode_message_record(react.encode()) == react
    with pytest.raises(WireError):
        decode_message_record(b"not json")


def test_server_frames_carry_their_type_first_and_omit_unset_targets() -> None:
    msg = MsgFrame("m1", "g:g1", 3, "alice", "hi", 9, group="g1")
    assert list(msg.to_dict()) == [
        "type",
        "msg_id",
        "conversation_id",
        "seq",
        "from",
        "body",
        "ts",
        "group",
    ]
    assert MsgFrame.from_dict(msg.to_dict()) == msg
    assert ErrorFrame("bad_request", "no").to_dict() == {
        "type": "error",
        "code": "bad_request",
        "message": "no",
    }
    assert ErrorFrame("unavailable", "x", "c1").to_dict()["id"] == "c1"
    assert SyncedFrame(0).to_dict() == {"type": "synced", "count": 0}
    # An event keeps its null fields: clients of release 1 read them.
    assert EventFrame("member_removed", "g1", "bob").to_dict() == {
        "type": "event",
        "event": "member_removed",
        "group": "g1",
        "user_id": "bob",
        "role": None,
        "actor_id": None,
        "ts": None,
    }


def batch() -> GatewayBatch:
    return GatewayBatch(
        acks=[AckDelivery("conn-1", AckFrame("c1", "m1", "d:alice:bob", 1, 5))],
        msgs=[
            MessagePush(
                MsgFrame("m1", "d:alice:bob", 1, "alice", "hi", 5, to="bob"), ["bob"], "conn-1"
            )
        ],
        events=[FramePush({"type": "event", "event": "member_added"}, ["bob", "carol"])],
    )


def test_a_batch_round_trips() -> None:
    assert GatewayBatch.decode(batch().encode()) == batch()
    assert not GatewayBatch() and batch()


def test_a_release_1_gateway_can_read_a_batch() -> None:
    """Release 1 read positional entries: (conn, ack), (msg, users, exclude), (frame, users, _)."""
    data = json.loads(batch().encode())
    acks = [(conn_id, frame["id"]) for conn_id, frame in data.get("acks", [])]
    msgs = [(frame["seq"], users, exclude) for frame, users, exclude in data.get("msgs", [])]
    events = [(frame["event"], users) for frame, users, _ in data.get("events", [])]
    assert acks == [("conn-1", "c1")]
    assert msgs == [(1, ["bob"], "conn-1")]
    assert events == [("member_added", ["bob", "carol"])]


def test_a_batch_of_a_newer_release_decodes() -> None:
    """New keys are ignored, extra trailing positions in an entry too."""
    data = json.loads(batch().encode())
    data["v"] = 9
    data["receipts"] = [["anything"]]
    data["acks"][0].append("a later position")
    data["msgs"][0][0]["thread"] = "t0"
    decoded = GatewayBatch.decode(json.dumps(data))
    assert decoded.acks == batch().acks and decoded.msgs == batch().msgs


def test_a_release_1_batch_without_a_version_decodes() -> None:
    data = json.loads(batch().encode())
    del data["v"]
    assert GatewayBatch.decode(json.dumps(data)) == batch()


@pytest.mark.parametrize(
    "raw",
    [b"nope", b"[]", b'{"acks": [["only-conn"]]}', b'{"msgs": [[{"seq": 1}, ["bob"], null]]}'],
)
def test_a_malformed_batch_is_a_wire_error(raw: bytes) -> None:
    with pytest.raises(WireError):
        GatewayBatch.decode(raw)


def test_the_resync_signal_is_a_batch() -> None:
    signal = GatewayBatch.decode(RESYNC)
    assert signal.resync and not signal.acks and not signal.msgs
    assert not GatewayBatch.decode(batch().encode()).resync
