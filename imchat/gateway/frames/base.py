"""The base of client frame types and their registry."""

from __future__ import annotations

import abc
from typing import TYPE_CHECKING, Any, ClassVar

from marshmallow import RAISE, Schema, fields

from imchat.wire.frames import ErrorFrame

if TYPE_CHECKING:
    from imchat.gateway.connection import Connection
    from imchat.gateway.hub import Gateway


class FrameError(Exception):
    """A frame refused with an ``error`` frame: nothing of it was accepted."""

    def __init__(self, code: str, message: str, cid: str | None = None) -> None:
        super().__init__(message)
        self.code, self.message, self.cid = code, message, cid

    def frame(self) -> ErrorFrame:
        return ErrorFrame(self.code, self.message, self.cid)


class FrameSchema(Schema):
    """Every client frame: a ``type`` and no field the schema does not name."""

    class Meta:
        unknown = RAISE

    type = fields.String(required=True)


REGISTRY: dict[str, ClientFrame] = {}


class ClientFrame(abc.ABC):
    """One frame type: ``TYPE``, its ``Schema`` and ``handle``.

    A subclass registers itself under its ``TYPE`` when it is defined; one
    that names no ``TYPE`` of its own is a base shared by several types.
    """

    TYPE: ClassVar[str]
    Schema: ClassVar[type[FrameSchema]] = FrameSchema

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "TYPE" in vars(cls):
            REGISTRY[cls.TYPE] = cls()

    def __init__(self) -> None:
        self.schema = self.Schema()

    @abc.abstractmethod
    def handle(self, gateway: Gateway, conn: Connection, frame: dict[str, Any]) -> None:
        """Act on one validated frame; raise FrameError to refuse it."""
