"""Port bindings as requested → host ports to allocate (pure: no Redis, no kernel).

A requested binding (`models.PortBinding`, docker's `-p` after the client
split it) is one of:

    8080:80          a given host port                host_port=8080
    8000-8010:80     one free port of a host range    host_port=8000 host_port_end=8010
    8000-8010:80-90  port to port (same lengths)      ... container_port_end=90
    80               any free port of the dynamic range (host_port=0)
    80-90            a dynamic port for each container port

`validate_binding` normalises one (or raises InvalidArgument naming it, in
docker's own notation), `plan_requests` turns an endpoint's bindings into
`PortRequest`s: one host port to pick per container port, shared by every
`Target` of the request. A binding without host address publishes on the
network's default IPv4 binding address (0.0.0.0 unless the bridge option says
otherwise) AND on `::` when the endpoint has an IPv6 address, with the SAME
host port on both, as Docker does.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

from driver_service.models import PortBinding
from services.errors import InvalidArgument

PROTOCOLS = ("tcp", "udp", "sctp")
PORT_MAX = 65535
# Used when the host's net.ipv4.ip_local_port_range cannot be read (Docker's fallback).
DEFAULT_DYNAMIC_RANGE = (49153, 65535)


def describe(pb: PortBinding) -> str:
    """A binding in docker's `-p` notation: "127.0.0.1:8000-8010:80/tcp"."""
    host = str(pb.host_port) if pb.host_port else ""
    if pb.host_port_end and pb.host_port_end != pb.host_port:
        host += f"-{pb.host_port_end}"
    container = str(pb.container_port)
    if pb.container_port_end and pb.container_port_end != pb.container_port:
        container += f"-{pb.container_port_end}"
    ip = f"[{pb.host_ip}]" if ":" in pb.host_ip else pb.host_ip
    prefix = f"{ip}:{host}:" if ip else (f"{host}:" if host else "")
    return f"{prefix}{container}/{pb.protocol}"


def host_binding(ip: str, port: int | str) -> str:
    """ "0.0.0.0:8080" / "[::]:8080": the form of libnetwork's "Bind for ... failed"."""
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def _bad(pb: PortBinding, why: str) -> InvalidArgument:
    return InvalidArgument(
        f"invalid port binding {describe(pb)!r}: {why}",
        reason="INVALID_PORT_BINDING",
        metadata={"binding": describe(pb)},
    )


def _host_ip(pb: PortBinding) -> str:
    try:
        ip = ipaddress.ip_address(pb.host_ip)
    except ValueError:
        raise _bad(pb, f"host address {pb.host_ip!r} is not an IP address") from None
    if ip.is_multicast:
        raise _bad(pb, f"host address {ip} is a multicast address")
    if ip.version == 6 and ip.is_loopback:
        # IPv6 has no route_localnet: NAT can never take a ::1 source out of the host.
        raise _bad(pb, "publishing on ::1 is not supported (use 127.0.0.1 or ::)")
    if ip.version == 6 and ip.ipv4_mapped is not None:
        raise _bad(pb, f"host address {ip} is IPv4-mapped; give {ip.ipv4_mapped} instead")
    return str(ip)


def validate_binding(pb: PortBinding) -> PortBinding:
    """`pb` normalised (protocol lower case, host address canonical, ends 0 when
    equal to the start, no container address), or InvalidArgument naming it."""
    proto = pb.protocol.lower() if isinstance(pb.protocol, str) else ""
    if proto not in PROTOCOLS:
        raise InvalidArgument(
            f"invalid port binding protocol {pb.protocol!r}: must be tcp, udp or sctp",
            reason="INVALID_PORT_BINDING",
        )
    pb = dataclasses.replace(pb, protocol=proto)
    for value, what in (
        (pb.container_port, "container port"),
        (pb.container_port_end, "container port range end"),
        (pb.host_port, "host port"),
        (pb.host_port_end, "host port range end"),
    ):
        if not 0 <= value <= PORT_MAX:
            raise _bad(pb, f"{what} {value} is out of range (1-{PORT_MAX})")
    if pb.container_port == 0:
        raise _bad(pb, "no container port (0)")
    if pb.container_port_end and pb.container_port_end < pb.container_port:
        raise _bad(
            pb,
            f"container port range end {pb.container_port_end} is below its start "
            f"{pb.container_port}",
        )
    if pb.host_port_end and not pb.host_port:
        raise _bad(pb, "a host port range needs a start port (host port 0 means dynamic)")
    if pb.host_port_end and pb.host_port_end < pb.host_port:
        raise _bad(pb, f"host port range end {pb.host_port_end} is below its start {pb.host_port}")
    c_end = pb.container_port_end or pb.container_port
    h_end = pb.host_port_end or pb.host_port
    if (
        c_end > pb.container_port
        and pb.host_port
        and h_end - pb.host_port != c_end - pb.container_port
    ):
        raise _bad(
            pb,
            "a container port range needs a host range of the same length, or no host port",
        )
    return dataclasses.replace(
        pb,
        host_ip=_host_ip(pb) if pb.host_ip else "",
        host_port_end=h_end if h_end != pb.host_port else 0,
        container_port_end=c_end if c_end != pb.container_port else 0,
        container_ip="",
    )


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


def _targets(
    pb: PortBinding, address: str, address_ipv6: str, default_ipv4: str
) -> tuple[Target, ...]:
    v4 = str(ipaddress.ip_interface(address).ip) if address else ""
    v6 = str(ipaddress.ip_interface(address_ipv6).ip) if address_ipv6 else ""
    if pb.host_ip:
        container = v6 if ":" in pb.host_ip else v4
        if not container:
            family = "IPv6" if ":" in pb.host_ip else "IPv4"
            raise _bad(pb, f"the endpoint has no {family} address to forward {pb.host_ip} to")
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
                req = PortRequest(pb.protocol, cport, targets, dynamic=True, spec=spec)
            elif c_end > pb.container_port:
                port = pb.host_port + i
                req = PortRequest(pb.protocol, cport, targets, port, port, spec=spec)
            else:
                high = pb.host_port_end or pb.host_port
                req = PortRequest(pb.protocol, cport, targets, pb.host_port, high, spec=spec)
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
