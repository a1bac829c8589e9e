"""Size bounds of every request input, in one place, and how errors show bad values.

Every public RPC of the three services passes `check_request` (from the server
interceptor) before its handler runs, so an oversized input is INVALID_ARGUMENT
with reason LIMIT_EXCEEDED and nothing is stored. Labels and options follow
what Docker users expect to fit (a key of 255 bytes, a value of 4 KiB, 128 of
them); `OBJECT_MAPS_MAX` bounds all the maps of one request together, so any
page of a list stays a few MiB at most.

`shown` is how an error message echoes a value the caller gave: quoted and cut
at 64 characters, so an error about a 20,000-character name stays small (gRPC
carries the message in a header limited to a few KiB).
"""

from __future__ import annotations

import re
from typing import Any

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from services.errors import InvalidArgument

KEY_MAX = 255  # bytes of a label or option key
VALUE_MAX = 4096  # bytes of a label or option value
ENTRIES_MAX = 128  # entries of one labels/options map
OBJECT_MAPS_MAX = 64 * 1024  # bytes of every map key and value of one request together
STRING_MAX = 4096  # bytes of any other string (PATH_MAX)
LIST_MAX = 1024  # items of any repeated field
# Repeated fields that legitimately hold more (field full name -> items).
LIST_MAX_BY_FIELD = {
    # Every sandbox of a busy host.
    "cnm.controller.v1.GarbageCollectRequest.valid_sandbox_ids": 65536,
    # `--expose 1-65535` is one entry per port.
    "cnm.controller.v1.EndpointSpec.exposed_ports": 65535,
    "cnm.driver.v1.CreateEndpointRequest.exposed_ports": 65535,
}

# Ids of one IdAllocator range: 2^32 (VNIs need 2^24); a range is one Redis value.
ID_RANGE_MAX = 1 << 32

SHOWN_MAX = 64  # characters of a value echoed in an error message
MESSAGE_MAX = 1024  # characters of an error message (a safety net over `shown`)

REASON = "LIMIT_EXCEEDED"


def clip(text: str, limit: int = SHOWN_MAX) -> str:
    """`text` cut to `limit` characters, with "..." when something was cut."""
    return text if len(text) <= limit else text[:limit] + "..."


# A quoted word (no spaces) longer than SHOWN_MAX: quote, first SHOWN_MAX characters, rest.
_LONG_QUOTED = re.compile(rf"""(['"])([^'"\s]{{{SHOWN_MAX}}})[^'"\s]+\1""")


def cut_quoted(message: str) -> str:
    """`message` with every quoted word longer than SHOWN_MAX cut as `shown` cuts it:
    the safety net for messages built without `shown`."""
    return _LONG_QUOTED.sub(r"\1\2\1...", message)


def shown(value: object) -> str:
    """A caller's value as error messages quote it: repr, cut at SHOWN_MAX characters."""
    if isinstance(value, str) and len(value) > SHOWN_MAX:
        return repr(value[:SHOWN_MAX]) + "..."
    return clip(repr(value), SHOWN_MAX + 2)


def _too_big(path: str, size: int, limit: int, unit: str) -> InvalidArgument:
    return InvalidArgument(
        f"invalid {path}: {size} {unit}, at most {limit}",
        reason=REASON,
        metadata={"field": clip(path, 256), "limit": str(limit)},
    )


def _check_string(path: str, value: str, limit: int) -> int:
    # len() in characters is a lower bound of the UTF-8 length, exact for ASCII.
    size = len(value)
    if size * 4 > limit:
        size = len(value.encode("utf-8", "surrogatepass"))
    if size > limit:
        raise _too_big(path, size, limit, "bytes")
    return size


def _check_map(path: str, value: Any, entry: Any) -> int:
    if len(value) > ENTRIES_MAX:
        raise _too_big(path, len(value), ENTRIES_MAX, "entries")
    value_field = entry.fields_by_name["value"]
    total = 0
    for key, item in value.items():
        if isinstance(key, str):
            total += _check_string(f"{path} key {shown(key)}", key, KEY_MAX)
        if value_field.type == FieldDescriptor.TYPE_STRING:
            total += _check_string(f"{path}[{shown(key)}]", item, VALUE_MAX)
        elif value_field.type == FieldDescriptor.TYPE_MESSAGE:
            total += _walk(item, f"{path}[{shown(key)}]")
    return total


def _walk(message: Message, prefix: str) -> int:
    """Checks one message; returns the bytes its maps hold (for the per-object total)."""
    maps = 0
    for field, value in message.ListFields():
        path = prefix + field.name
        entry = field.message_type  # None unless the field is a message
        if entry is not None and entry.GetOptions().map_entry:
            maps += _check_map(path, value, entry)
            continue
        repeated = field.is_repeated
        if repeated:
            limit = LIST_MAX_BY_FIELD.get(field.full_name, LIST_MAX)
            if len(value) > limit:
                raise _too_big(path, len(value), limit, "items")
            items = value
        else:
            items = (value,)
        if field.type == FieldDescriptor.TYPE_STRING:
            for i, item in enumerate(items):
                _check_string(f"{path}[{i}]" if repeated else path, item, STRING_MAX)
        elif field.type == FieldDescriptor.TYPE_BYTES:
            for i, item in enumerate(items):
                if len(item) > STRING_MAX:
                    raise _too_big(
                        f"{path}[{i}]" if repeated else path, len(item), STRING_MAX, "bytes"
                    )
        elif field.type == FieldDescriptor.TYPE_MESSAGE:
            for i, item in enumerate(items):
                maps += _walk(item, (f"{path}[{i}]" if repeated else path) + ".")
    return maps


def check_request(message: Message) -> None:
    """Raises InvalidArgument (reason LIMIT_EXCEEDED) when any input is over its bound.
    Anything that is not a protobuf message (a raw-bytes handler) is left alone."""
    if not isinstance(message, Message):
        return
    total = _walk(message, "")
    if total > OBJECT_MAPS_MAX:
        raise _too_big("labels and options", total, OBJECT_MAPS_MAX, "bytes in all")
