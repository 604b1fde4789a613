"""One encode and one decode for every wire record.

A record is a frozen dataclass whose fields map to JSON keys (``wire=`` when
the key is not a Python name, such as ``from``). Decoding is tolerant the way
rolling upgrades need: unknown keys are ignored, a missing field with a
default takes it, and only a missing required field is an error.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, ClassVar, TypeVar

R = TypeVar("R", bound="Record")


class WireError(ValueError):
    """Bytes that are not a record of the expected kind (not JSON, a required field missing)."""


def wire_field(
    *,
    wire: str | None = None,
    omit_none: bool = False,
    default: Any = dataclasses.MISSING,
    default_factory: Any = dataclasses.MISSING,
) -> Any:
    """A field whose JSON key is ``wire`` (default: its name); ``omit_none``
    leaves it out of the JSON while it is None."""
    metadata = {"wire": wire, "omit_none": omit_none}
    return dataclasses.field(default=default, default_factory=default_factory, metadata=metadata)


@dataclasses.dataclass(frozen=True)
class _Spec:
    attr: str
    key: str
    omit_none: bool
    required: bool


_SPECS: dict[type, tuple[_Spec, ...]] = {}


def _specs(cls: type) -> tuple[_Spec, ...]:
    """The fields of a record class, worked out once per class."""
    found = _SPECS.get(cls)
    if found is not None:
        return found
    specs = []
    for f in dataclasses.fields(cls):
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        key = f.metadata.get("wire") or f.name
        specs.append(_Spec(f.name, key, bool(f.metadata.get("omit_none")), required))
    _SPECS[cls] = tuple(specs)
    return _SPECS[cls]


class Record:
    """Base of the wire dataclasses: dict and bytes forms, tolerant decoding."""

    # A frame sent to clients carries its type first; bus records have none.
    TYPE: ClassVar[str | None] = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {} if self.TYPE is None else {"type": self.TYPE}
        for spec in _specs(type(self)):
            value = getattr(self, spec.attr)
            if value is None and spec.omit_none:
                continue
            out[spec.key] = value.to_dict() if isinstance(value, Record) else value
        return out

    @classmethod
    def from_dict(cls: type[R], data: Any) -> R:
        if not isinstance(data, dict):
            raise WireError(f"a {cls.__name__} must be a JSON object")
        values: dict[str, Any] = {}
        for spec in _specs(cls):
            if spec.key in data:
                values[spec.attr] = data[spec.key]
            elif spec.required:
                raise WireError(f"a {cls.__name__} needs {spec.key!r}")
        return cls(**values)

    def encode(self) -> bytes:
        return json.dumps(self.to_dict()).encode()

    @classmethod
    def decode(cls: type[R], raw: bytes | str) -> R:
        try:
            data = json.loads(raw)
        except (ValueError, RecursionError) as exc:
            raise WireError(f"a {cls.__name__} must be JSON: {exc}") from None
        return cls.from_dict(data)
