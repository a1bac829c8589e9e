"""Helpers of the embedded-DNS tests: real queries from inside sandboxes.

`ask` sends a query from a socket made inside the sandbox's network namespace
to 127.0.0.11:53 (UDP, or TCP) and returns dnslib's parsed reply; `getent`
runs `cnmctl sandbox exec NAME -- getent ...`, the path a container's libc
takes (the sandbox's resolv.conf and hosts bind-mounted over the host's).
Only addresses inside namespaces the test made, and 127.0.0.11 inside them,
are ever contacted.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from dnslib import QTYPE, RCODE, DNSRecord

from dns_service.netns_socket import in_namespace

BIN = Path(sys.executable).parent
RESOLVER = "127.0.0.11"
# What a query raises while the resolver is not (yet) listening, or when a UDP answer is lost:
# a poll (harness.wait.until(..., retry_on=RESOLVER_DOWN)) asks again.
RESOLVER_DOWN = (OSError, TimeoutError)


def ask(key: str, name: str, qtype: str = "A", *, tcp: bool = False, timeout: float = 5.0):
    """dnslib reply to `name`/`qtype` asked from inside the namespace at `key`."""
    kind = socket.SOCK_STREAM if tcp else socket.SOCK_DGRAM
    sock = in_namespace(key, lambda: socket.socket(socket.AF_INET, kind))
    with sock:
        sock.settimeout(timeout)
        data = DNSRecord.question(name, qtype).pack()
        sock.connect((RESOLVER, 53))
        if tcp:
            sock.sendall(len(data).to_bytes(2, "big") + data)
            size = int.from_bytes(_exact(sock, 2), "big")
            return DNSRecord.parse(_exact(sock, size))
        sock.send(data)
        return DNSRecord.parse(sock.recv(65535))


def _exact(sock: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        assert chunk, "connection closed early"
        buf += chunk
    return buf


def rcode(reply) -> str:
    return RCODE.get(reply.header.rcode)


def values(reply, qtype: str = "A") -> list[str]:
    want = getattr(QTYPE, qtype)
    return [str(rr.rdata) for rr in reply.rr if rr.rtype == want]


def answers(key: str, name: str, qtype: str = "A") -> Callable[[], list[str]]:
    return lambda: values(ask(key, name, qtype, timeout=1.0), qtype)


def rcode_is(key: str, name: str, code: str, qtype: str = "A") -> Callable[[], bool]:
    return lambda: rcode(ask(key, name, qtype, timeout=1.0)) == code


def cnmctl(controller: str, *args: str, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / "cnmctl"), "--controller", controller, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def getent(controller: str, sandbox: str, *args: str) -> subprocess.CompletedProcess:
    return cnmctl(controller, "sandbox", "exec", sandbox, "--", "getent", *args)
