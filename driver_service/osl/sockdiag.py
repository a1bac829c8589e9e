"""Listening TCP sockets of this process's namespace, through sock_diag (netlink).

Port publishing refuses ports a host process listens on. /proc/net/tcp would
tell too, but reading it walks the kernel's whole established-connection
hash table whatever the number of sockets (~5 ms per address family on the
development machine, for a handful of sockets); a sock_diag dump restricted
to TCP_LISTEN walks only the listening hash (~0.2 ms). UDP and SCTP tables
are small: `driver_service.ports.listeners` reads those from /proc.

Every Join that publishes a port asks, so the request is a fixed 72 bytes
built with struct on a plain socket and the replies are read with struct:
pyroute2's DiagSocket cost ~0.9 ms of CPU per call (a handle, its event
loop, decoding every field), this ~0.1 ms.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
from contextlib import suppress

from pyroute2.netlink.exceptions import NetlinkError

from .rtnl import kernel_errors

NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
NLMSG_ERROR = 2
NLMSG_DONE = 3
NLM_F_REQUEST = 0x1
NLM_F_DUMP = 0x300
_TCP_LISTEN = 10

_NLMSG = struct.Struct("=IHHII")  # len, type, flags, seq, pid
# inet_diag_req_v2: family, protocol, ext, pad, states, then inet_diag_sockid (48 bytes, zero).
_REQ = struct.Struct("=BBBxI48x")
# inet_diag_msg: family, state, timer, retrans, then the sockid: sport (big endian), dport, src[16].
_MSG = struct.Struct("=BBBBH2x16s")


def _address(family: int, raw: bytes) -> str:
    if family == socket.AF_INET:
        return socket.inet_ntop(socket.AF_INET, raw[:4])
    ip = ipaddress.IPv6Address(raw)
    return str(ip.ipv4_mapped) if ip.ipv4_mapped is not None else str(ip)


def _dump(sock: socket.socket, family: int, seq: int) -> set[tuple[str, int]]:
    """One TCP_LISTEN dump of `family` (the kernel runs one dump at a time per socket)."""
    body = _REQ.pack(family, socket.IPPROTO_TCP, 0, 1 << _TCP_LISTEN)
    header = _NLMSG.pack(
        _NLMSG.size + len(body), SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST | NLM_F_DUMP, seq, 0
    )
    sock.send(header + body)
    out: set[tuple[str, int]] = set()
    while True:
        data = sock.recv(1 << 16)
        off = 0
        while off + _NLMSG.size <= len(data):
            length, kind, _, rseq, _ = _NLMSG.unpack_from(data, off)
            if length < _NLMSG.size or off + length > len(data):
                break
            if rseq == seq:
                if kind == NLMSG_DONE:
                    return out
                if kind == NLMSG_ERROR:
                    code = -struct.unpack_from("=i", data, off + _NLMSG.size)[0]
                    if code:
                        raise NetlinkError(code)
                    return out
                if kind == SOCK_DIAG_BY_FAMILY and length >= _NLMSG.size + _MSG.size:
                    fam, _, _, _, port, src = _MSG.unpack_from(data, off + _NLMSG.size)
                    out.add((_address(fam, src), socket.ntohs(port)))
            off += (length + 3) & ~3
        if not data:
            return out


def tcp_listeners() -> set[tuple[str, int]]:
    """(address, port) of every listening TCP socket, IPv4 and IPv6 (IPv4-mapped
    addresses given as IPv4)."""
    out: set[tuple[str, int]] = set()
    with (
        kernel_errors("list listening TCP sockets"),
        socket.socket(
            socket.AF_NETLINK, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC, NETLINK_SOCK_DIAG
        ) as sock,
    ):
        out |= _dump(sock, socket.AF_INET, 1)
        # A kernel without IPv6 has no IPv6 listeners.
        with suppress(NetlinkError):
            out |= _dump(sock, socket.AF_INET6, 2)
    return out
