"""Port bindings as requested → host ports to allocate (pure: no Redis, no kernel).

A requested binding (`services.values.ports.PortBinding`, docker's `-p` after
the client split it, validated by `validate_binding` there): `plan_requests`
turns an endpoint's bindings into `PortRequest`s: one host port to pick per container port, shared by every
`Target` of the request. A binding without host address publishes on the
network's default IPv4 binding address (0.0.0.0 unless the bridge option says
otherwise) AND on `::` when the endpoint has an IPv6 address, with the SAME
host port on both, as Docker does.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass, field

from services.values.ports import (
    PORT_MAX,
    PortBinding,
    bad_binding,
    describe,
)

# Used when the host's net.ipv4.ip_local_port_range cannot be read (Docker's fallback).
DEFAULT_DYNAMIC_RANGE = (49153, 65535)


@dataclass(frozen=True)
class Target:
    """One host address a port is published on, and where it forwards to."""

    host_ip: str
    container_ip: str

    @property
    def family(self) -> int:
        return 6 if ":" in self.host_ip else 4


@dataclass(frozen=True)
class PortRequest:
    """Pick ONE host port of [low, high] free on every target, for `container_port`.

    `dynamic`: the range is the host's dynamic range (filled in by the
    allocator; low/high are 0 here) and the search starts after the port
    handed out last, as Docker's allocator does, so that a port just
    released is not reused at once.
    """

    protocol: str
    container_port: int
    targets: tuple[Target, ...]
    low: int = 0
    high: int = 0
    dynamic: bool = False
    # The binding this came from, for messages.
    spec: str = ""
    # ... and as a value: a published binding is this one with its host port
    # chosen, so every other field of it is carried through.
    binding: PortBinding = field(default=PortBinding(), compare=False)


def _targets(
    pb: PortBinding, address: str, address_ipv6: str, default_ipv4: str
) -> tuple[Target, ...]:
    v4 = str(ipaddress.ip_interface(address).ip) if address else ""
    v6 = str(ipaddress.ip_interface(address_ipv6).ip) if address_ipv6 else ""
    if pb.host_ip:
        container = v6 if ":" in pb.host_ip else v4
        if not container:
            family = "IPv6" if ":" in pb.host_ip else "IPv4"
            raise bad_binding(
                pb, f"the endpoint has no {family} address to forward {pb.host_ip} to"
            )
        return (Target(pb.host_ip, container),)
    out = []
    if v4:
        out.append(Target(default_ipv4, v4))
    if v6:
        out.append(Target("::", v6))
    return tuple(out)


def plan_requests(
    bindings: Sequence[PortBinding],
    *,
    address: str,
    address_ipv6: str,
    default_ipv4: str = "0.0.0.0",
) -> list[PortRequest]:
    """The host ports an endpoint's (validated) bindings need, in binding order."""
    out: list[PortRequest] = []
    for pb in bindings:
        targets = _targets(pb, address, address_ipv6, default_ipv4)
        if not targets:
            continue
        spec = describe(pb)
        c_end = pb.container_port_end or pb.container_port
        for i, cport in enumerate(range(pb.container_port, c_end + 1)):
            if not pb.host_port:
                req = PortRequest(pb.protocol, cport, targets, dynamic=True, spec=spec, binding=pb)
            elif c_end > pb.container_port:
                port = pb.host_port + i
                req = PortRequest(pb.protocol, cport, targets, port, port, spec=spec, binding=pb)
            else:
                high = pb.host_port_end or pb.host_port
                req = PortRequest(
                    pb.protocol, cport, targets, pb.host_port, high, spec=spec, binding=pb
                )
            out.append(req)
    return out


def parse_port_range(text: str) -> tuple[int, int] | None:
    """(low, high) of net.ipv4.ip_local_port_range's "32768\\t60999"; None when unusable."""
    parts = text.split()
    if len(parts) != 2 or not all(p.isdigit() for p in parts):
        return None
    low, high = int(parts[0]), int(parts[1])
    if not 1 <= low <= high <= PORT_MAX:
        return None
    return low, high
