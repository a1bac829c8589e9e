"""Which ports processes of this host already listen on (sock_diag, /proc/net/{udp,...}).

A port a host process listens on must not be published: the DNAT rule would
silently steal its traffic. Docker finds out by binding the port itself (its
userland proxy holds it open); cnm publishes with NAT only and reads the
kernel's socket tables instead (TCP through sock_diag, `osl.tcp_listeners`;
UDP from /proc/net/udp{,6}; SCTP from /proc/net/sctp/eps), because a probe
bind
- holds the port for a moment, so a real server starting at that instant
  fails with EADDRINUSE: the check would cause the failure it looks for;
- either ignores listeners (SO_REUSEADDR with UDP) or refuses ports that only
  an outgoing connection uses (without SO_REUSEADDR), where NAT is harmless;
- cannot check a range: picking a free port of 28k dynamic ones would take
  thousands of binds, while one dump lists every listener at once.

What counts: TCP sockets in LISTEN, UDP sockets not connected to a peer
(connected ones are clients: their replies match conntrack, not the port
map), SCTP endpoints (/proc/net/sctp/eps, present once the module is loaded).

sock_diag answers for the calling thread's namespace and /proc/self/net for
the process's: the driver service and its threads run in the host's
namespace, so both are the host's view.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import socket
from collections.abc import Iterable
from pathlib import Path

from driver_service import osl

log = logging.getLogger(__name__)

PROC_NET = Path("/proc/self/net")
_TCP_LISTEN = "0A"
_UDP_UNCONNECTED = "07"

# (address, port): the address as text ("0.0.0.0", "::", "127.0.0.1").
Listener = tuple[str, int]


def _hex_address(text: str) -> str:
    """/proc/net's address: 32-bit words in host (little-endian) byte order."""
    raw = bytes.fromhex(text)
    swapped = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    ip = ipaddress.ip_address(swapped)
    if ip.version == 6 and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ip)


def parse_inet(text: str, *, udp: bool) -> set[Listener]:
    """Listeners in the text of /proc/net/{tcp,tcp6,udp,udp6}."""
    out: set[Listener] = set()
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 4:
            continue
        local, remote, state = fields[1], fields[2], fields[3]
        if udp:
            if state != _UDP_UNCONNECTED or remote.split(":")[1] != "0000":
                continue
        elif state != _TCP_LISTEN:
            continue
        addr, _, port = local.partition(":")
        try:
            out.add((_hex_address(addr), int(port, 16)))
        except ValueError:
            log.debug("unreadable /proc/net line: %r", line)
    return out


def parse_sctp_eps(text: str) -> set[Listener]:
    """Listeners in /proc/net/sctp/eps: LPORT is the 6th column, then addresses."""
    out: set[Listener] = set()
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 9 or not fields[5].isdigit():
            continue
        port = int(fields[5])
        for addr in fields[8:]:
            try:
                out.add((str(ipaddress.ip_address(addr)), port))
            except ValueError:
                continue
    return out


def _read(name: str) -> str:
    try:
        return (PROC_NET / name).read_text()
    except FileNotFoundError:
        return ""  # no IPv6, or no SCTP module: nothing can listen there
    except OSError as e:
        log.warning("cannot read /proc/net/%s: %s", name, e)
        return ""


def read_listeners(protocol: str) -> set[Listener]:
    """Every address:port a process of this namespace listens on for `protocol`."""
    if protocol == "sctp":
        return parse_sctp_eps(_read("sctp/eps"))
    if protocol == "tcp":
        # Not /proc/net/tcp: reading it walks every established connection (see osl.sockdiag).
        return osl.tcp_listeners()
    return parse_inet(_read("udp"), udp=True) | parse_inet(_read("udp6"), udp=True)


def overlaps(listener_ip: str, host_ip: str) -> bool:
    """Would publishing on `host_ip` take traffic meant for a listener on `listener_ip`?

    Same address, or either is a wildcard of the family. A listener on `::` also
    covers IPv4: Linux sockets are dual-stack unless they set IPV6_V6ONLY, which
    /proc does not show, so cnm assumes the common case and refuses.
    """
    l6, h6 = ":" in listener_ip, ":" in host_ip
    if listener_ip == "::" and not h6:
        return True
    if l6 != h6:
        return False
    return (
        listener_ip == host_ip or listener_ip in ("0.0.0.0", "::") or host_ip in ("0.0.0.0", "::")
    )


def busy_ports(
    listeners: Iterable[Listener], host_ips: Iterable[str], low: int, high: int
) -> list[int]:
    """Ports of [low, high] a listener holds on any of `host_ips`, sorted."""
    ips = list(host_ips)
    return sorted(
        {
            port
            for ip, port in listeners
            if low <= port <= high and any(overlaps(ip, h) for h in ips)
        }
    )


def is_local_address(ip: str) -> bool:
    """Whether `ip` is an address of this host (the driver's namespace), so a
    server could bind it: a wildcard, or an address on one of its interfaces.

    Found by binding a UDP socket to it with port 0, which takes no port and
    answers EADDRNOTAVAIL exactly as Docker's userland proxy would ("cannot
    assign requested address").
    """
    addr = ipaddress.ip_address(ip)
    if addr.is_unspecified:
        return True
    family = socket.AF_INET6 if addr.version == 6 else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        try:
            s.bind((ip, 0))
        except OSError as e:
            if e.errno == errno.EADDRNOTAVAIL:
                return False
            raise
    return True
