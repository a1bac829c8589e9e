"""Port bindings (docker's `-p`), exposed ports (`--expose`) and the protocols they use.

A requested binding is one of:

    8080:80          a given host port                host_port=8080
    8000-8010:80     one free port of a host range    host_port=8000 host_port_end=8010
    8000-8010:80-90  port to port (same lengths)      ... container_port_end=90
    80               any free port of the dynamic range (host_port=0)
    80-90            a dynamic port for each container port

A published (reported) binding has one host port, one container port and the
`container_ip` the port forwards to. `validate_binding` normalises a requested
binding, or raises InvalidArgument naming it in docker's own notation.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from dataclasses import dataclass

from services.errors import InvalidArgument

PROTOCOLS = ("tcp", "udp", "sctp")
PORT_MAX = 65535


@dataclass(frozen=True)
class PortBinding:
    protocol: str = "tcp"  # one of PROTOCOLS
    # "" publishes on every address (0.0.0.0, and :: for an IPv6 endpoint).
    host_ip: str = ""
    host_port: int = 0
    host_port_end: int = 0
    container_port: int = 0
    container_port_end: int = 0
    # Set on published bindings: the container address the port forwards to.
    container_ip: str = ""


@dataclass(frozen=True)
class ExposedPort:
    protocol: str = "tcp"
    port: int = 0


# ------------------------------------------------------------------ protocols


def protocol(value: object, what: str = "") -> str:
    """'tcp', 'udp' or 'sctp' (any case), or InvalidArgument naming `what`."""
    text = value.lower() if isinstance(value, str) else value
    if text not in PROTOCOLS:
        prefix = f"{what} " if what else ""
        raise InvalidArgument(
            f"invalid {prefix}protocol {value!r}: must be tcp, udp or sctp",
            reason="INVALID_PROTOCOL",
        )
    return str(text)


# ------------------------------------------------------------------ messages


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


def bad_binding(pb: PortBinding, why: str, field: str = "") -> InvalidArgument:
    return InvalidArgument(
        f"invalid port binding {describe(pb)!r}: {why}",
        reason="INVALID_PORT_BINDING",
        metadata={"binding": describe(pb)},
        field=field,
    )


# ------------------------------------------------------------------ validation


def _host_ip(pb: PortBinding) -> str:
    try:
        ip = ipaddress.ip_address(pb.host_ip)
    except ValueError:
        raise bad_binding(
            pb, f"host address {pb.host_ip[:64]!r} is not an IP address", "host_ip"
        ) from None
    if ip.is_multicast:
        raise bad_binding(pb, f"host address {ip} is a multicast address", "host_ip")
    if ip.version == 6 and ip.is_loopback:
        # IPv6 has no route_localnet: NAT can never take a ::1 source out of the host.
        raise bad_binding(pb, "publishing on ::1 is not supported (use 127.0.0.1 or ::)", "host_ip")
    if ip.version == 6 and ip.ipv4_mapped is not None:
        raise bad_binding(
            pb, f"host address {ip} is IPv4-mapped; give {ip.ipv4_mapped} instead", "host_ip"
        )
    return str(ip)


def validate_binding(pb: PortBinding) -> PortBinding:
    """A requested binding normalised (protocol lower case, host address
    canonical, range ends 0 when equal to the start, no container address), or
    InvalidArgument naming it."""
    proto = pb.protocol.lower() if isinstance(pb.protocol, str) else ""
    if proto not in PROTOCOLS:
        raise InvalidArgument(
            f"invalid port binding protocol {str(pb.protocol)[:64]!r}: must be tcp, udp or sctp",
            reason="INVALID_PORT_BINDING",
            field="protocol",
        )
    pb = dataclasses.replace(pb, protocol=proto)
    for value, what, field in (
        (pb.container_port, "container port", "container_port"),
        (pb.container_port_end, "container port range end", "container_port_end"),
        (pb.host_port, "host port", "host_port"),
        (pb.host_port_end, "host port range end", "host_port_end"),
    ):
        if not 0 <= value <= PORT_MAX:
            raise bad_binding(pb, f"{what} {value} is out of range (1-{PORT_MAX})", field)
    if pb.container_port == 0:
        raise bad_binding(pb, "no container port (0)", "container_port")
    if pb.container_port_end and pb.container_port_end < pb.container_port:
        raise bad_binding(
            pb,
            f"container port range end {pb.container_port_end} is below its start "
            f"{pb.container_port}",
            "container_port_end",
        )
    if pb.host_port_end and not pb.host_port:
        raise bad_binding(
            pb, "a host port range needs a start port (host port 0 means dynamic)", "host_port_end"
        )
    if pb.host_port_end and pb.host_port_end < pb.host_port:
        raise bad_binding(
            pb,
            f"host port range end {pb.host_port_end} is below its start {pb.host_port}",
            "host_port_end",
        )
    c_end = pb.container_port_end or pb.container_port
    h_end = pb.host_port_end or pb.host_port
    if (
        c_end > pb.container_port
        and pb.host_port
        and h_end - pb.host_port != c_end - pb.container_port
    ):
        raise bad_binding(
            pb,
            "a container port range needs a host range of the same length, or no host port",
            "host_port_end",
        )
    return dataclasses.replace(
        pb,
        host_ip=_host_ip(pb) if pb.host_ip else "",
        host_port_end=h_end if h_end != pb.host_port else 0,
        container_port_end=c_end if c_end != pb.container_port else 0,
        container_ip="",
    )


def validate_exposed(p: ExposedPort) -> ExposedPort:
    """An exposed port normalised (protocol lower case), or InvalidArgument naming it."""
    proto = protocol(p.protocol, "exposed port")
    if not 1 <= p.port <= PORT_MAX:
        raise InvalidArgument(
            f"invalid exposed port {p.port}/{proto}: expected a port number 1-{PORT_MAX}",
            reason="INVALID_EXPOSED_PORT",
            field="port",
        )
    return ExposedPort(protocol=proto, port=p.port)
