"""Port publishing tests' world: a driver "host" wired to an "outside" namespace, and
servers/clients that say who they talked to.

    outside (192.0.2.2, 2001:db8:70::2) --wan/uplink veth-- host (192.0.2.1, 2001:db8:70::1)
                                                            `- cnm bridges -- sandboxes

The outside namespace has NO route to any sandbox subnet: it reaches a
sandbox only through a published port on the host's underlay address.

`serve(ns, proto, ports)` runs a server in a namespace that answers every
TCP connection / UDP datagram / SCTP association with "<peer ip> <local port>",
so a test sees both which container port it reached and which client address
the server saw. `ask(ns, targets)` makes all its requests from one process and
returns the answers, or "refused" / "timeout" / "error:<name>".
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import redis
from driver_world import DriverHost, shared_host

from harness import kernel_snapshot, netns
from harness.spawner import Spawner

OUTSIDE = "192.0.2.2"
HOST = "192.0.2.1"
OUTSIDE6 = "2001:db8:70::2"
HOST6 = "2001:db8:70::1"

SERVER = r"""
import select, socket, sys
proto, ports = sys.argv[1], [int(p) for p in sys.argv[2:]]
kind = {"tcp": socket.SOCK_STREAM, "udp": socket.SOCK_DGRAM, "sctp": socket.SOCK_STREAM}[proto]
ipproto = socket.IPPROTO_SCTP if proto == "sctp" else 0
socks = []
for port in ports:
    s = socket.socket(socket.AF_INET6, kind, ipproto)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("::", port))
    if kind == socket.SOCK_STREAM:
        s.listen(16)
    socks.append(s)
print("ready", flush=True)

def who(addr):
    return addr[0].removeprefix("::ffff:")

while True:
    for s in select.select(socks, [], [])[0]:
        port = s.getsockname()[1]
        if kind == socket.SOCK_STREAM:
            c, peer = s.accept()
            c.sendall(f"{who(peer)} {port}\n".encode())
            c.close()
        else:
            data, peer = s.recvfrom(100)
            s.sendto(f"{who(peer)} {port}\n".encode(), peer)
"""

CLIENT = r"""
import json, socket, sys
out = []
wait = float(sys.argv[2])
for host, port, proto in json.loads(sys.argv[1]):
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        if proto == "udp":
            s = socket.socket(family, socket.SOCK_DGRAM)
            s.settimeout(wait)
            s.sendto(b"hi", (host, port))
            out.append(s.recv(100).decode().strip())
        else:
            ipproto = socket.IPPROTO_SCTP if proto == "sctp" else 0
            s = socket.socket(family, socket.SOCK_STREAM, ipproto)
            s.settimeout(wait)
            s.connect((host, port))
            out.append(s.recv(100).decode().strip())
        s.close()
    except ConnectionRefusedError:
        out.append("refused")
    except (TimeoutError, socket.timeout):
        out.append("timeout")
    except OSError as e:
        out.append(f"error:{e.strerror}")
print(json.dumps(out))
"""


def ask(ns: str, *targets: tuple[str, int] | tuple[str, int, str], wait: float = 5.0) -> list[str]:
    """One answer per (address, port[, proto]) asked from inside namespace `ns`, each
    within `wait` seconds (generous: test machines run several suites at once)."""
    full = [(t[0], t[1], t[2] if len(t) > 2 else "tcp") for t in targets]
    argv = [sys.executable, "-c", CLIENT, json.dumps(full), str(wait)]
    res = netns.exec_in(ns, *argv, timeout=60 + wait * len(full))
    return json.loads(res.stdout)


@contextmanager
def serve(ns: str, proto: str, *ports: int) -> Iterator[subprocess.Popen]:
    """A server in namespace `ns` on `ports`; killed (by PID) on exit."""
    spawn = Spawner()
    proc = spawn(
        [sys.executable, "-c", SERVER, proto, *map(str, ports)],
        netns_name=ns,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline().strip()
        assert line == "ready", f"server in {ns} did not start: {line} {proc.stderr.read()}"
        yield proc
    finally:
        spawn.stop(proc, signal.SIGKILL)
        proc.stdout.close()
        proc.stderr.close()


@contextmanager
def ports_world(redis_url: str, netns_prefix: str) -> Iterator[tuple[DriverHost, str]]:
    """A module's driver host plus the outside namespace on its uplink."""
    with shared_host(redis_url, netns_prefix) as h:
        ext = f"cnmtest-{kernel_snapshot.TEST_TAG}-out{uuid.uuid4().hex[:5]}"
        netns.create(ext)
        try:
            h.host_exec("ip", "link", "add", "uplink", "type", "veth", "peer", "name", "wan",
                        "netns", ext)  # fmt: skip
            h.host_exec("ip", "addr", "add", f"{HOST}/24", "dev", "uplink")
            h.host_exec("ip", "addr", "add", f"{HOST6}/64", "dev", "uplink", "nodad")
            h.host_exec("ip", "link", "set", "uplink", "up")
            netns.exec_in(ext, "ip", "addr", "add", f"{OUTSIDE}/24", "dev", "wan")
            netns.exec_in(ext, "ip", "addr", "add", f"{OUTSIDE6}/64", "dev", "wan", "nodad")
            netns.exec_in(ext, "ip", "link", "set", "wan", "up")
            yield h, ext
        finally:
            netns.delete(ext)


def map_elements(host: DriverHost) -> str:
    """cnm's four port maps as the kernel lists them ("" when the table is gone)."""
    out = []
    for name in ("ports_v4", "ports_v4_any", "ports_v6", "ports_v6_any"):
        res = host.host_exec("nft", "list", "map", "inet", "cnm", name, check=False)
        out.append(res.stdout)
    return "\n".join(out)


def allocations(host: DriverHost) -> dict[str, dict[str, str]]:
    """The host's port allocations in Redis: {"alloc": {...}, "owners": {...}}."""
    client = redis.Redis.from_url(host.redis_url, decode_responses=True)
    try:
        return {
            part: client.hgetall(f"cnm:ports:{host.host_id}:{part}") for part in ("alloc", "owners")
        }
    finally:
        client.close()
