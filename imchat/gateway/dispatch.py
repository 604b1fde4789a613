"""One client frame in: parsed, validated by its type's schema, handled.

Every failure becomes an ``error`` frame on the connection; none closes it.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

from marshmallow import ValidationError
from sqlalchemy.exc import SQLAlchemyError

from imchat import metrics
from imchat.backends.base import BackendUnavailable
from imchat.gateway.frames import REGISTRY, ClientFrame, FrameError

if TYPE_CHECKING:
    from imchat.gateway.connection import Connection
    from imchat.gateway.hub import Gateway

log = logging.getLogger("imchat.gateway")


def handle_frame(gateway: Gateway, conn: Connection, raw: str | bytes) -> None:
    """Validate and dispatch one frame; every failure becomes an ``error`` frame."""
    frame: dict[str, Any] = {}
    try:
        if conn.limit is not None and not conn.limit.take():
            raise FrameError("rate_limited", "too many frames; slow down", _cid_of(raw))
        kind, frame = _parse(raw)
        kind.handle(gateway, conn, frame)
    except FrameError as err:
        _refuse(conn, err)
    except BackendUnavailable as err:
        _refuse(conn, FrameError("unavailable", str(err), frame.get("id")))
    except SQLAlchemyError as err:
        log.warning("database error on a %s frame: %s", frame.get("type"), err)
        message = "database unavailable; retry with the same id"
        _refuse(conn, FrameError("unavailable", message, frame.get("id")))
    except Exception:
        # A bug must cost one frame, never the connection. Nothing was accepted.
        metrics.ERRORS.labels("internal", "ws").inc()
        log.exception("unexpected error on a %s frame", frame.get("type"))
        message = "internal error; nothing was accepted"
        conn.send_frame(FrameError("unavailable", message, frame.get("id")).frame())


def _refuse(conn: Connection, err: FrameError) -> None:
    metrics.ERRORS.labels(err.code, "ws").inc()
    conn.send_frame(err.frame())


def _cid_of(raw: str | bytes) -> str | None:
    try:
        cid = json.loads(raw).get("id")
    except (ValueError, AttributeError, RecursionError):
        return None
    return cid if isinstance(cid, str) else None


def _parse(raw: str | bytes) -> tuple[ClientFrame, dict[str, Any]]:
    try:
        frame = json.loads(raw)
    except ValueError:
        raise FrameError("bad_request", "frame is not JSON") from None
    except RecursionError:
        raise FrameError("bad_request", "frame is nested too deeply") from None
    if not isinstance(frame, dict):
        raise FrameError("bad_request", "frame must be a JSON object")
    cid = frame.get("id") if isinstance(frame.get("id"), str) else None
    kind_name = frame.get("type")
    kind = REGISTRY.get(kind_name) if isinstance(kind_name, str) else None
    if kind is None:
        raise FrameError("bad_request", f"unknown frame type {str(kind_name)[:40]!r}", cid)
    try:
        loaded: dict[str, Any] = kind.schema.load(frame)
    except ValidationError as err:
        raise FrameError("bad_request", f"invalid {kind.TYPE} frame: {err.messages}", cid) from None
    return kind, loaded
