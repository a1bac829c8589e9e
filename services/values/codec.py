"""The one JSON codec of cnm's records: frozen dataclasses <-> JSON text.

Records are stored in Redis in this form and survive upgrades, so decoding is
lenient where it must be: a key this version does not know is ignored (an
older reader of a newer record), a missing key takes the field's default (a
newer reader of an older record). Enums are stored by value, tuples as lists,
mappings as objects with string keys and values.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import types
import typing
from collections.abc import Mapping
from typing import Any, TypeVar

T = TypeVar("T")

_HINTS: dict[type, dict[str, Any]] = {}


def to_json(obj: Any) -> str:
    """Compact, with sorted keys: equal records give equal text."""
    return json.dumps(plain(obj), separators=(",", ":"), sort_keys=True)


def from_json(cls: type[T], text: str | bytes) -> T:
    return typing.cast(T, build(cls, json.loads(text)))


def plain(obj: Any) -> Any:
    """`obj` as plain JSON data (dicts, lists, strings, numbers)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, tuple | list):
        return [plain(v) for v in obj]
    if isinstance(obj, Mapping):
        return {str(k): plain(v) for k, v in obj.items()}
    return obj


def build(tp: Any, value: Any) -> Any:
    """Plain JSON data as the type `tp` (a dataclass, an enum, a tuple, ...)."""
    if value is None:
        return None
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in typing.get_args(tp) if a is not type(None)]
        return build(inner[0], value)
    if origin is tuple:
        (inner, _ellipsis) = typing.get_args(tp)
        return tuple(build(inner, v) for v in value)
    if origin in (Mapping, dict) or tp is Mapping:
        return {str(k): str(v) for k, v in value.items()}
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return tp(value)
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        hints = _HINTS.get(tp)
        if hints is None:
            hints = _HINTS[tp] = typing.get_type_hints(tp)
        names = {f.name for f in dataclasses.fields(tp)}
        return tp(**{k: build(hints[k], v) for k, v in value.items() if k in names})
    return value
