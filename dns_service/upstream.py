"""Forwarding the names cnm does not own to upstream servers, within a deadline.

The upstreams are the sandbox's own servers (`--dns`) or else the host's
(its resolv.conf, re-read when it changes). Queries leave from the resolver's
own namespace, the host's: so a loopback upstream such as systemd-resolved's
127.0.0.53 is reachable (what Docker >= 25 does), which it never is from a
sandbox. Servers are tried in order, the time left shared among those not yet
tried; no answer from any within the deadline: None (the caller says SERVFAIL).
"""

from __future__ import annotations

import ipaddress
import os
import socket
import threading
import time

from dns_service.wire import message_id

PORT = 53


def nameservers(text: str) -> tuple[str, ...]:
    """The `nameserver` addresses of a resolv.conf text, in order (bad ones skipped)."""
    out = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 2 and fields[0] == "nameserver":
            try:
                out.append(str(ipaddress.ip_address(fields[1].split("%", 1)[0])))
            except ValueError:
                continue
    return tuple(out)


class HostServers:
    """The host's nameservers, from its resolv.conf; re-read when its mtime changes."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._servers: tuple[str, ...] = ()

    def get(self) -> tuple[str, ...]:
        try:
            st = os.stat(self.path)
            stamp = (st.st_mtime_ns, st.st_ino)
        except OSError:
            return ()
        with self._lock:
            if stamp != self._stamp:
                try:
                    with open(self.path) as f:
                        self._servers = nameservers(f.read())
                except OSError:
                    self._servers = ()
                self._stamp = stamp
            return self._servers


def forward(query: bytes, servers: tuple[str, ...], timeout: float) -> bytes | None:
    """The first upstream answer carrying the query's id, or None."""
    want = message_id(query)
    deadline = time.monotonic() + timeout
    for i, server in enumerate(servers):
        left = deadline - time.monotonic()
        if left <= 0:
            break
        budget = left / (len(servers) - i)
        family = socket.AF_INET6 if ":" in server else socket.AF_INET
        with socket.socket(family, socket.SOCK_DGRAM) as s:
            try:
                s.connect((server, PORT))
                s.send(query)
                until = time.monotonic() + budget
                while (wait := until - time.monotonic()) > 0:
                    s.settimeout(wait)
                    data = s.recv(65535)
                    if message_id(data) == want:
                        return data
            except OSError:  # timeout, refused (ICMP), unreachable: try the next one
                continue
    return None
