"""How a fuzz case is written, and the cases made from the protos themselves.

A `Case` names one RPC, a request (or a function of the world's object ids
giving one), the exact status code and, optionally, the ErrorInfo reason and
words the message must contain. `oversize_cases` walks every request message
of every public service and makes, for each string, list and map in it (nested
ones too), a request holding just that one input over its bound
(services.limits): each must be INVALID_ARGUMENT, reason LIMIT_EXCEEDED,
naming the field, with a short message.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf import message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor

from cnm.controller.v1 import controller_pb2
from cnm.driver.v1 import driver_pb2
from cnm.ipam.v1 import ipam_pb2
from services import limits

C = grpc.StatusCode
Ids = dict[str, str]


@dataclass(frozen=True)
class Case:
    id: str
    service: str
    method: str
    request: Any  # a message, or Callable[[Ids], message]
    code: grpc.StatusCode
    reason: str | None = None
    text: str | None = None

    def build(self, ids: Ids) -> Any:
        return self.request(ids) if callable(self.request) else self.request


def case(
    id_: str,
    service: str,
    method: str,
    request: Any,
    code: grpc.StatusCode,
    text: str | None = None,
    reason: str | None = None,
) -> Case:
    return Case(id_, service, method, request, code, reason, text)


SERVICES = {
    "Controller": controller_pb2.DESCRIPTOR.services_by_name["Controller"],
    "Ipam": ipam_pb2.DESCRIPTOR.services_by_name["Ipam"],
    "IdAllocator": ipam_pb2.DESCRIPTOR.services_by_name["IdAllocator"],
    "Driver": driver_pb2.DESCRIPTOR.services_by_name["Driver"],
}
HUGE = "x" * 20000

Path = tuple[tuple[FieldDescriptor, bool], ...]  # (field, descend into its first item)


def _is_map(f: FieldDescriptor) -> bool:
    return f.type == FieldDescriptor.TYPE_MESSAGE and f.message_type.GetOptions().map_entry


def _inputs(desc: Descriptor, prefix: Path = (), depth: int = 0) -> Iterator[tuple[str, Path]]:
    """(kind, path) of every string, list and map reachable in `desc`."""
    for f in desc.fields:
        here = (*prefix, (f, False))
        if _is_map(f):
            yield "map", here
            continue
        if f.is_repeated:
            yield "list", here
        if f.type == FieldDescriptor.TYPE_STRING:
            yield "string", (*prefix, (f, f.is_repeated))
        elif f.type == FieldDescriptor.TYPE_MESSAGE and depth < 3:
            yield from _inputs(f.message_type, (*prefix, (f, f.is_repeated)), depth + 1)


def _name(path: Path) -> str:
    return ".".join(f.name + ("[0]" if first else "") for f, first in path)


def _fill(msg: Any, path: Path, kind: str, variant: str) -> None:
    for f, first in path[:-1]:
        msg = getattr(msg, f.name).add() if first else getattr(msg, f.name)
    f, first = path[-1]
    target = getattr(msg, f.name)
    if kind == "map":
        if variant == "entries":
            target.update({f"k{i}": "v" for i in range(limits.ENTRIES_MAX + 1)})
        elif variant == "key":
            target["k" * (limits.KEY_MAX + 1)] = "v"
        else:
            target["k"] = "v" * (limits.VALUE_MAX + 1)
    elif kind == "list":
        n = limits.LIST_MAX_BY_FIELD.get(f.full_name, limits.LIST_MAX) + 1
        if f.type == FieldDescriptor.TYPE_MESSAGE:
            for _ in range(n):
                target.add()
        elif f.type == FieldDescriptor.TYPE_STRING:
            target.extend(["a"] * n)
        else:
            target.extend([1] * n)
    elif first:
        target.append(HUGE)
    else:
        setattr(msg, f.name, HUGE)


def _maker(desc: Descriptor, path: Path, kind: str, variant: str) -> Callable[[Ids], Any]:
    def make(ids: Ids) -> Any:
        msg = message_factory.GetMessageClass(desc)()
        _fill(msg, path, kind, variant)
        return msg

    return make


def oversize_cases() -> list[Case]:
    out = []
    for service, sdesc in SERVICES.items():
        for method in sdesc.methods:
            for kind, path in _inputs(method.input_type):
                variants = ("entries", "key", "value") if kind == "map" else (kind,)
                for variant in variants:
                    label = {"string": "20000-chars", "list": "too-many-items"}.get(
                        variant, f"map-{variant}"
                    )
                    out.append(
                        case(
                            f"{label}-{service}.{method.name}.{_name(path)}",
                            service,
                            method.name,
                            _maker(method.input_type, path, kind, variant),
                            C.INVALID_ARGUMENT,
                            # The message names the field (a map key is named by its map).
                            text=path[-1][0].name,
                            reason=limits.REASON,
                        )
                    )
    return out
