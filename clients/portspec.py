"""`-p [HOSTIP:][HOSTPORT[-END]]:PORT[-END][/PROTO]`, parsed exactly as docker does.

A port of go-connections' `nat.ParsePortSpec` (what `docker run -p` uses):

- the spec is split on ":" from the right: the last part is the container
  port, the one before it the host port, everything before that the host IP
  (so bare IPv6 such as `::1:8080:80` works, and `[::1]:8080:80` too);
- the protocol suffix defaults to tcp (`80/` is tcp as well); tcp, udp and
  sctp are accepted in any case;
- a container range expands into one binding per port; the host side must
  then be empty (dynamic) or a range of the same length, mapped port to port;
- a single container port with a host range asks for any one free port of
  that range (kept as `host_port`..`host_port_end`);
- an empty host port (`ip::80`, `80`) asks for a dynamic host port (0).

Pure: no grpc, no protobuf; clients.client turns `PortMapping`s into protos.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

PROTOCOLS = ("tcp", "udp", "sctp")


class PortSpecError(ValueError):
    """A spec docker would reject; the message says which part is wrong."""


@dataclass(frozen=True)
class PortMapping:
    """One published container port (docker's nat.PortMapping)."""

    protocol: str
    # Host address to bind; "" for every address.
    host_ip: str
    # 0: any free port of the dynamic range.
    host_port: int
    # > host_port: any one free port of host_port..host_port_end.
    host_port_end: int
    container_port: int

    def __str__(self) -> str:
        host = str(self.host_port) if self.host_port else ""
        if self.host_port_end > self.host_port:
            host += f"-{self.host_port_end}"
        ip = f"[{self.host_ip}]" if ":" in self.host_ip else self.host_ip
        prefix = f"{ip}:{host}:" if ip else (f"{host}:" if host else "")
        return f"{prefix}{self.container_port}/{self.protocol}"


def _split_parts(raw: str) -> tuple[str, str, str]:
    parts = raw.split(":")
    n = len(parts)
    if n == 1:
        return "", "", parts[0]
    if n == 2:
        return "", parts[0], parts[1]
    if n == 3:
        return parts[0], parts[1], parts[2]
    return ":".join(parts[: n - 2]), parts[n - 2], parts[n - 1]


def split_proto_port(raw: str) -> tuple[str, str]:
    """("tcp", "80") from "80"; ("udp", "53") from "53/udp"; ("", "") from ""."""
    parts = raw.split("/")
    if not raw or not parts[0]:
        return "", ""
    if len(parts) == 1 or not parts[1]:
        return "tcp", parts[0]
    return parts[1], parts[0]


def _parse_uint16(text: str) -> int:
    # Go's strconv.ParseUint(s, 10, 16): ASCII digits only, no sign, no spaces.
    if not text or not text.isascii() or not text.isdigit():
        raise ValueError(text)
    value = int(text)
    if value > 65535:
        raise ValueError(text)
    return value


def parse_port_range(text: str) -> tuple[int, int]:
    """(start, end) of "80" or "8000-8010"; ValueError when malformed or reversed."""
    if not text:
        raise ValueError("empty string specified for ports")
    if "-" not in text:
        port = _parse_uint16(text)
        return port, port
    parts = text.split("-")
    if len(parts) != 2:
        raise ValueError(f"invalid range specified for port: {text}")
    start, end = _parse_uint16(parts[0]), _parse_uint16(parts[1])
    if end < start:
        raise ValueError(f"invalid range specified for port: {text}")
    return start, end


def _parse_ip(raw: str) -> str:
    ip = raw
    if ip.startswith("["):
        # Go's net.SplitHostPort(ip + ":"): exactly one bracketed host.
        if not ip.endswith("]") or ip.count("[") != 1 or ip.count("]") != 1:
            raise PortSpecError(f"invalid IP address {raw}")
        ip = ip[1:-1]
    # Go's net.ParseIP knows no zone ids (fe80::1%eth0); Python's would accept them.
    if "%" in ip:
        raise PortSpecError(f"invalid IP address: {raw}")
    try:
        return str(ipaddress.ip_address(ip))
    except ValueError:
        raise PortSpecError(f"invalid IP address: {raw}") from None


def parse_port_spec(raw: str) -> list[PortMapping]:
    """Every binding `-p raw` stands for; PortSpecError when docker would refuse it."""
    ip_part, host_part, container_part = _split_parts(raw)
    proto, container_part = split_proto_port(container_part)
    host_ip = _parse_ip(ip_part) if ip_part else ""
    if not container_part:
        raise PortSpecError(f"no port specified: {raw}<empty>")
    try:
        start, end = parse_port_range(container_part)
    except ValueError:
        raise PortSpecError(f"invalid containerPort: {container_part}") from None
    if start == 0:
        raise PortSpecError(f"invalid containerPort: {container_part}")
    host_start = host_end = 0
    if host_part:
        try:
            host_start, host_end = parse_port_range(host_part)
        except ValueError:
            raise PortSpecError(f"invalid hostPort: {host_part}") from None
        if end - start != host_end - host_start and end != start:
            raise PortSpecError(
                f"invalid ranges specified for container and host Ports: "
                f"{container_part} and {host_part}"
            )
    proto = proto.lower()
    if proto not in PROTOCOLS:
        raise PortSpecError(f"invalid proto: {proto}")
    if start == end:
        return [PortMapping(proto, host_ip, host_start, host_end, start)]
    return [
        PortMapping(
            proto,
            host_ip,
            host_start + i if host_part else 0,
            host_start + i if host_part else 0,
            start + i,
        )
        for i in range(end - start + 1)
    ]
