"""Helpers for the controller's integration tests: reading what a world holds.

The world itself (Redis, IPAM, driver services in host namespaces, controllers)
is built by tests/harness/world.py; these functions look at one: a sandbox's
namespace and addresses, who answers a ping, every stored fact, the links of
the host namespaces.
"""

from __future__ import annotations

from cnm.controller.v1 import controller_pb2 as pb
from driver_service.osl.query import TOMBSTONE_PREFIX
from harness.netns import exec_in

T = 10  # seconds: the timeout= of every RPC in these tests


def sandbox_netns(sandbox: pb.Sandbox) -> str:
    """`ip netns exec` name of a sandbox: its key is /run/netns/<name>."""
    assert sandbox.key.startswith("/run/netns/"), sandbox.key
    return sandbox.key.rsplit("/", 1)[1]


def addresses_in(netns_name: str) -> str:
    """`ip -o addr` of a namespace without the driver's tombstones: a left veth is
    renamed cnmgc<n> and set down at once, but deleted (with its IPv4 address) by
    a background thread a moment later (driver_service/osl/reaper.py)."""
    out = exec_in(netns_name, "ip", "-o", "addr", "show").stdout
    return "".join(
        line for line in out.splitlines(keepends=True)
        if not line.split()[1].startswith(TOMBSTONE_PREFIX)
    )  # fmt: skip


def ping_all(src_netns: str, addresses: list[str], timeout: float = 1) -> list[str]:
    """Addresses that do NOT answer a ping from `src_netns` (one process for all).
    A silent address gets a second try with a longer wait: on a loaded machine
    one of 200 first pings can miss its 1 s (ARP resolution included)."""
    wait = int(max(1, timeout))
    script = "; ".join(
        f"ping -c1 -W{wait} -q {a} >/dev/null 2>&1 || ping -c1 -W{wait + 2} -q {a} >/dev/null 2>&1"
        f" || echo {a}"
        for a in addresses
    )
    res = exec_in(src_netns, "sh", "-c", script, check=False, timeout=30 + 4 * len(addresses))
    return res.stdout.split()


# Keys that change by themselves (heartbeats, liveness, leases, the event log).
_VOLATILE = ("host:", "controller:", "events", "store:last_beat")


def snapshot(redis_url: str, prefix: str = "cnm") -> dict[str, object]:
    """Every stored fact except the volatile ones, type-aware, comparable with ==."""
    import redis

    client = redis.Redis.from_url(redis_url, decode_responses=False)
    out: dict[str, object] = {}
    try:
        for raw in client.scan_iter(match=f"{prefix}:*", count=1000):
            key = raw.decode()
            if key[len(prefix) + 1 :].startswith(_VOLATILE):
                continue
            kind = client.type(raw).decode()
            if kind == "string":
                out[key] = client.get(raw)
            elif kind == "hash":
                out[key] = client.hgetall(raw)
            elif kind == "set":
                out[key] = client.smembers(raw)
            elif kind == "zset":
                out[key] = client.zrange(raw, 0, -1, withscores=True)
            elif kind == "list":
                out[key] = client.lrange(raw, 0, -1)
            else:
                out[key] = kind
    finally:
        client.close()
    return out


def kernel_view(host_netns: list[str], tag: str) -> dict[str, object]:
    """Links of each host namespace and the tagged namespaces that exist."""
    from harness.netns import run

    view: dict[str, object] = {
        "netns": sorted(
            line.split()[0]
            for line in run("ip", "netns", "list").stdout.splitlines()
            if tag in line
        )
    }
    for name in host_netns:
        links = run("ip", "-n", name, "-o", "link", "show").stdout.splitlines()
        view[name] = sorted(line.split(": ")[1].split("@")[0] for line in links)
    return view
