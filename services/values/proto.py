"""The shared values <-> their cnm.types.v1 messages, for every service's edge.

Fields are copied by name (a message field and its dataclass field share the
name), so a field added to both is carried without a change here; only what
differs in form (the protocol enum) is converted explicitly.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any

from cnm.types.v1 import types_pb2 as tpb
from services.errors import InvalidArgument
from services.values.dns import DnsConfig, ExtraHost
from services.values.ports import ExposedPort, PortBinding

_PROTOCOL_TO_PB: dict[str, tpb.Protocol.ValueType] = {
    "tcp": tpb.PROTOCOL_TCP,
    "udp": tpb.PROTOCOL_UDP,
    "sctp": tpb.PROTOCOL_SCTP,
}
_PROTOCOL_FROM_PB = {v: k for k, v in _PROTOCOL_TO_PB.items()}


def _same_named(cls: type, message: Any, *skip: str) -> dict[str, Any]:
    return {f.name: getattr(message, f.name) for f in dataclasses.fields(cls) if f.name not in skip}


def protocol_from_pb(value: tpb.Protocol.ValueType, what: str, *, default_tcp: bool = False) -> str:
    """A cnm.types.v1.Protocol as text. PROTOCOL_UNSPECIFIED is tcp with
    `default_tcp` (Docker's default, for the public API), else like an unknown
    number InvalidArgument naming `what`."""
    if default_tcp and value == tpb.PROTOCOL_UNSPECIFIED:
        return "tcp"
    try:
        return _PROTOCOL_FROM_PB[value]
    except KeyError:
        raise InvalidArgument(
            f"{what}: protocol must be PROTOCOL_TCP, PROTOCOL_UDP or PROTOCOL_SCTP",
            reason="INVALID_PROTOCOL",
        ) from None


def protocol_to_pb(value: str) -> tpb.Protocol.ValueType:
    return _PROTOCOL_TO_PB.get(value, tpb.PROTOCOL_UNSPECIFIED)


def binding_from_pb(p: tpb.PortBinding, *, default_tcp: bool = False) -> PortBinding:
    what = f"port binding {p.container_port}"
    return PortBinding(
        protocol=protocol_from_pb(p.protocol, what, default_tcp=default_tcp),
        **_same_named(PortBinding, p, "protocol"),
    )


def binding_to_pb(b: PortBinding) -> tpb.PortBinding:
    return tpb.PortBinding(
        protocol=protocol_to_pb(b.protocol), **_same_named(PortBinding, b, "protocol")
    )


def exposed_from_pb(p: tpb.ExposedPort, *, default_tcp: bool = False) -> ExposedPort:
    what = f"exposed port {p.port}"
    return ExposedPort(
        protocol=protocol_from_pb(p.protocol, what, default_tcp=default_tcp), port=p.port
    )


def exposed_to_pb(p: ExposedPort) -> tpb.ExposedPort:
    return tpb.ExposedPort(protocol=protocol_to_pb(p.protocol), port=p.port)


def dns_from_pb(d: tpb.DnsConfig) -> DnsConfig:
    return DnsConfig(servers=tuple(d.servers), search=tuple(d.search), options=tuple(d.options))


def dns_to_pb(d: DnsConfig) -> tpb.DnsConfig:
    return tpb.DnsConfig(servers=d.servers, search=d.search, options=d.options)


def extra_hosts_from_pb(items: Iterable[tpb.ExtraHost]) -> tuple[ExtraHost, ...]:
    return tuple(ExtraHost(**_same_named(ExtraHost, h)) for h in items)


def extra_hosts_to_pb(items: Iterable[ExtraHost]) -> list[tpb.ExtraHost]:
    return [tpb.ExtraHost(**_same_named(ExtraHost, h)) for h in items]
