"""Self-repair while the driver runs: a bridge or a sandbox's veth deleted behind
cnm's back comes back by itself (link-deletion events), and traffic flows again.
The time from the deletion to the link being back (bridge with its ports, or
eth0 with its address) is printed (`-s` shows it)."""

from __future__ import annotations

import time

import pytest
from driver_world import links, netns_name, ping, shared_host

from harness import netns
from harness.wait import eventually

DEADLINE = 15.0  # generous: the machine may be loaded


@pytest.fixture(scope="module")
def shared(redis_server, netns_prefix):
    with shared_host(redis_server, netns_prefix) as h:
        yield h


@pytest.fixture
def host(shared, redis_url):
    shared.reset_or_recover()
    yield shared
    shared.reset_or_recover()


def repaired_in(what: str, fn) -> float:
    start = time.monotonic()
    assert eventually(fn, timeout=DEADLINE, interval=0.02), f"{what} not repaired"
    took = time.monotonic() - start
    print(f"\n{what} repaired in {took * 1e3:.0f} ms")
    return took


def ports_of(host, bridge: str) -> list[str]:
    """The links plugged into `bridge` (none while it is missing)."""
    out = host.host_exec("ip", "-o", "link", "show", "master", bridge, check=False).stdout
    return [line.split(": ")[1].split("@")[0] for line in out.splitlines() if ": " in line]


def eth0(sb) -> str:
    return netns.exec_in(
        netns_name(sb), "ip", "-o", "addr", "show", "dev", "eth0", check=False
    ).stdout


def test_a_deleted_bridge_is_recreated_and_its_sandboxes_talk_again(host):
    nid = host.network("10.61.0.0/24", name="heal")
    a, _ = host.attach(nid, "10.61.0.2/24", "a")
    b, eb = host.attach(nid, "10.61.0.3/24", "b")
    bridge = f"br-{nid[:12]}"
    host.host_exec("ip", "link", "delete", bridge)
    repaired_in("bridge", lambda: len(ports_of(host, bridge)) == 2)
    assert ping(a, "10.61.0.3") and ping(b, "10.61.0.2") and ping(a, "10.61.0.1")
    assert f"veth{eb[:11]}" in ports_of(host, bridge)


@pytest.mark.parametrize("side", ["host-end", "sandbox-end"])
def test_a_deleted_veth_is_recreated_with_its_address_and_default_route(host, side):
    nid = host.network("10.62.0.0/24", name="heal")
    a, ea = host.attach(nid, "10.62.0.2/24", "a")
    b, _ = host.attach(nid, "10.62.0.3/24", "b")
    mac = netns.exec_in(netns_name(a), "cat", "/sys/class/net/eth0/address").stdout
    if side == "host-end":
        host.host_exec("ip", "link", "delete", f"veth{ea[:11]}")
    else:
        netns.exec_in(netns_name(a), "ip", "link", "delete", "eth0")
    repaired_in(f"veth ({side})", lambda: "10.62.0.2/24" in eth0(a))
    assert ping(a, "10.62.0.3") and ping(b, "10.62.0.2") and ping(a, "10.62.0.1")
    assert netns.exec_in(netns_name(a), "cat", "/sys/class/net/eth0/address").stdout == mac
    routes = netns.exec_in(netns_name(a), "ip", "-4", "route", "show", "default").stdout
    assert "via 10.62.0.1 dev eth0" in routes


def test_a_left_endpoint_is_not_brought_back(host):
    nid = host.network("10.63.0.0/24", name="heal")
    a, ea = host.attach(nid, "10.63.0.2/24", "a")
    b, _ = host.attach(nid, "10.63.0.3/24", "b")
    host.leave(nid, ea, a.sandbox_id)
    # Deleting the bridge makes the repair look at every link of the network.
    host.host_exec("ip", "link", "delete", f"br-{nid[:12]}")
    repaired_in("bridge", lambda: len(ports_of(host, f"br-{nid[:12]}")) == 1)
    assert ping(b, "10.63.0.1")
    assert f"veth{ea[:11]}" not in links(host.host_ns)
    assert links(netns_name(a)) == ["lo"]
