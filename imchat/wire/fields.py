"""Field rules shared by the REST bodies and the client frames (marshmallow)."""

from __future__ import annotations

from typing import Any

from marshmallow import ValidationError, fields, validate

# A seq is a signed 64-bit column in every database.
MAX_SEQ = 2**63 - 1


def storable(value: str) -> None:
    """Reject text that UTF-8 cannot hold: JSON lets a lone surrogate (\\ud800) through."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValidationError("Not valid text (lone surrogate).") from None


def text(low: int, high: int, **kwargs: Any) -> fields.String:
    """A string field of ``low`` to ``high`` characters that the database can store."""
    return fields.String(validate=[validate.Length(low, high), storable], **kwargs)


def seq_field(**kwargs: Any) -> fields.Integer:
    """A seq: a strict integer from 1 to the largest signed 64-bit value."""
    return fields.Integer(strict=True, validate=validate.Range(min=1, max=MAX_SEQ), **kwargs)


class StrictBoolean(fields.Boolean):
    """JSON ``true`` or ``false`` only: not 1, "true" or "yes"."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> bool:
        if not isinstance(value, bool):
            raise self.make_error("invalid", input=value)
        return value
