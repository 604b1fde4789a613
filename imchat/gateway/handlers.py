"""Frame handlers: ``on_<type>``, each given the gateway, the connection and the frame."""

from __future__ import annotations

import contextlib
import json
import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

from marshmallow import ValidationError
from sqlalchemy.exc import SQLAlchemyError

from imchat import metrics
from imchat.backends.base import BackendUnavailable
from imchat.container import Services
from imchat.gateway.connection import Connection
from imchat.gateway.frames import SCHEMAS
from imchat.gateway.hub import Gateway
from imchat.services import groups
from imchat.services.conversations import direct_conversation_id, group_conversation_id
from imchat.stores import users as user_store
from imchat.topics import DIRECT_MSG, GROUP_MSG

log = logging.getLogger("imchat.gateway")
USER_CACHE_TTL = 3600
KNOWN_USERS_MAX = 100_000


class FrameError(Exception):
    def __init__(self, code: str, message: str, cid: str | None = None) -> None:
        super().__init__(message)
        self.code, self.message, self.cid = code, message, cid

    def frame(self) -> dict[str, Any]:
        frame = {"type": "error", "code": self.code, "message": self.message}
        if self.cid is not None:
            frame["id"] = self.cid
        return frame


def handle_frame(gateway: Gateway, conn: Connection, raw: str | bytes) -> None:
    """Validate and dispatch one frame; every failure becomes an ``error`` frame."""
    frame: dict[str, Any] = {}
    try:
        if conn.limit is not None and not conn.limit.take():
            raise FrameError("rate_limited", "too many frames; slow down", _cid_of(raw))
        frame = _parse(raw)
        HANDLERS[frame["type"]](gateway, conn, frame)
    except FrameError as err:
        metrics.ERRORS.labels(err.code, "ws").inc()
        conn.send_frame(err.frame())
    except BackendUnavailable as err:
        metrics.ERRORS.labels("unavailable", "ws").inc()
        conn.send_frame(FrameError("unavailable", str(err), frame.get("id")).frame())
    except SQLAlchemyError as err:
        metrics.ERRORS.labels("unavailable", "ws").inc()
        log.warning("database error on a %s frame: %s", frame.get("type"), err)
        message = "database unavailable; retry with the same id"
        conn.send_frame(FrameError("unavailable", message, frame.get("id")).frame())
    except Exception:
        # A bug must cost one frame, never the connection. Nothing was accepted.
        metrics.ERRORS.labels("internal", "ws").inc()
        log.exception("unexpected error on a %s frame", frame.get("type"))
        message = "internal error; nothing was accepted"
        conn.send_frame(FrameError("unavailable", message, frame.get("id")).frame())


def _cid_of(raw: str | bytes) -> str | None:
    try:
        cid = json.loads(raw).get("id")
    except (ValueError, AttributeError, RecursionError):
        return None
    return cid if isinstance(cid, str) else None


def _parse(raw: str | bytes) -> dict[str, Any]:
    try:
        frame = json.loads(raw)
    except ValueError:
        raise FrameError("bad_request", "frame is not JSON") from None
    except RecursionError:
        raise FrameError("bad_request", "frame is nested too deeply") from None
    if not isinstance(frame, dict):
        raise FrameError("bad_request", "frame must be a JSON object")
    cid = frame.get("id") if isinstance(frame.get("id"), str) else None
    kind = frame.get("type")
    schema = SCHEMAS.get(kind) if isinstance(kind, str) else None
    if schema is None:
        raise FrameError("bad_request", f"unknown frame type {str(kind)[:40]!r}", cid)
    try:
        loaded: dict[str, Any] = schema.load(frame)
    except ValidationError as err:
        raise FrameError(
            "bad_request", f"invalid {frame['type']} frame: {err.messages}", cid
        ) from None
    return loaded


def on_send(gateway: Gateway, conn: Connection, frame: dict[str, Any]) -> None:
    services = gateway.services
    cid = frame["id"]
    if "group" in frame:
        members = groups.member_ids(services, frame["group"])
        if members is None:
            raise FrameError("not_found", "no such group", cid)
        if conn.user_id not in members:
            raise FrameError("forbidden", "not a member of this group", cid)
        topic, conversation_id = GROUP_MSG.name, group_conversation_id(frame["group"])
    else:
        if not _user_exists(gateway, frame["to"]):
            raise FrameError("not_found", "no such user", cid)
        topic, conversation_id = DIRECT_MSG.name, direct_conversation_id(conn.user_id, frame["to"])
    envelope = {
        "msg_id": uuid.uuid4().hex,
        "cid": cid,
        "from": conn.user_id,
        "conversation_id": conversation_id,
        "body": frame["body"],
        "ts": int(time.time() * 1000),
        "gateway": gateway.gateway_id,
        "conn": conn.conn_id,
        **({"group": frame["group"]} if "group" in frame else {"to": frame["to"]}),
    }
    # The ack follows from the bus consumer once the seq is assigned.
    value = json.dumps(envelope).encode()
    published = time.monotonic()
    services.bus.publish(topic, conversation_id, value)
    conn.inflight[cid] = (topic, conversation_id, value, published)
    metrics.MESSAGES_ACCEPTED.labels("group" if "group" in frame else "direct").inc()
    log.debug(
        "accepted: on the bus",
        extra={
            "msg_id": envelope["msg_id"],
            "user_id": conn.user_id,
            "gateway_id": gateway.gateway_id,
        },
    )


def on_delivered(gateway: Gateway, conn: Connection, frame: dict[str, Any]) -> None:
    # Scoped to the connection's own user: nobody can trim another's pending messages.
    gateway.confirmations.add(conn.user_id, frame["conversation_id"], frame["seq"])


def on_ping(gateway: Gateway, conn: Connection, frame: dict[str, Any]) -> None:
    conn.send_frame({"type": "pong"})


def _user_exists(gateway: Gateway, user_id: str) -> bool:
    """Remembered per process once seen: accounts are never deleted."""
    if user_id in gateway.known_users:
        return True
    if not _user_exists_in_store(gateway.services, user_id):
        return False
    if len(gateway.known_users) >= KNOWN_USERS_MAX:
        gateway.known_users.clear()
    gateway.known_users.add(user_id)
    return True


def _user_exists_in_store(services: Services, user_id: str) -> bool:
    key = f"user-exists:{user_id}"
    with contextlib.suppress(BackendUnavailable):
        if services.seqs.cache_get(key):
            return True
    with services.db.session() as session:
        exists = user_store.exists(session, user_id)
    if exists:
        with contextlib.suppress(BackendUnavailable):
            services.seqs.cache_set(key, "1", USER_CACHE_TTL)
    return exists


HANDLERS: dict[str, Callable[[Gateway, Connection, dict[str, Any]], None]] = {
    "send": on_send,
    "delivered": on_delivered,
    "ping": on_ping,
}
