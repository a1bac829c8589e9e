"""Listening TCP sockets of this process's namespace, through sock_diag (netlink).

Port publishing refuses ports a host process listens on. /proc/net/tcp would
tell too, but reading it walks the kernel's whole established-connection
hash table whatever the number of sockets (~5 ms per address family on the
development machine, for a handful of sockets); a sock_diag dump restricted
to TCP_LISTEN walks only the listening hash (~0.2 ms). UDP and SCTP tables
are small: `driver_service.ports.listeners` reads those from /proc.
"""

from __future__ import annotations

import ipaddress
import socket

from pyroute2 import DiagSocket
from pyroute2.netlink.exceptions import NetlinkError

from .rtnl import kernel_errors

_TCP_LISTEN = 10


def _address(text: str) -> str:
    ip = ipaddress.ip_address(text)
    if ip.version == 6 and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ip)


def tcp_listeners() -> set[tuple[str, int]]:
    """(address, port) of every listening TCP socket, IPv4 and IPv6 (IPv4-mapped
    addresses given as IPv4)."""
    out: set[tuple[str, int]] = set()
    with kernel_errors("list listening TCP sockets"), DiagSocket() as ds:
        ds.bind()
        for family in (socket.AF_INET, socket.AF_INET6):
            try:
                msgs = ds.get_sock_stats(
                    family=family, protocol=socket.IPPROTO_TCP, states=1 << _TCP_LISTEN
                )
            except NetlinkError:
                if family == socket.AF_INET6:
                    continue  # a kernel without IPv6 has no IPv6 listeners
                raise
            for msg in msgs:
                out.add((_address(msg["idiag_src"]), int(msg["idiag_sport"])))
    return out
