"""The macvlan driver's isolated parents across a driver restart and --cleanup.

A world of its own (the restarted driver is a process of this test): one
host namespace, IPAM, driver and controller on the test's Redis.
"""

from __future__ import annotations

from controller_env import ping_all

from clients.client import Client
from cnm.types.v1 import types_pb2
from driver_service.drivers import macvlan
from harness import netns
from harness.netns import exec_in, run
from harness.wait import until
from harness.world import FAST_FAILOVER, single_host

T = 20.0


def _names() -> list[str]:
    return run("ip", "netns", "list").stdout.split()


def test_restart_rebuilds_a_lost_isolated_parent_and_removes_orphans(
    redis_url, netns_host, netns_prefix, spawn
):
    mine = f"{netns_prefix}mv-h1-"
    orphan = mine + "0123456789ab"
    try:
        with single_host(
            spawn, redis_url, netns_host, netns_prefix, tmp_prefix="cnmmvr",
            controller_env=FAST_FAILOVER,
        ) as w, Client(w.controller, timeout=T) as c:  # fmt: skip
            subnet = types_pb2.IpamConfig(subnet="10.95.0.0/24", gateway="10.95.0.1")
            net = c.create_network("mvre", driver="macvlan", subnets=[subnet], host="h1")
            ns = mine + net.id[:12]
            w.stop_host("h1")
            # Behind the stopped driver's back: its parent lost, a stray one left.
            run("ip", "netns", "delete", ns)
            run("ip", "netns", "add", orphan)
            w.start_host("h1")
            assert ns in _names() and orphan not in _names()
            assert "mvparent" in exec_in(ns, "ip", "-o", "link", "show").stdout
            sbs = [c.create_sandbox(name, host="h1") for name in ("r1", "r2")]
            _a, b = c.connect("mvre", "r1"), c.connect("mvre", "r2")
            one = sbs[0].key.rsplit("/", 1)[1]
            peer = b.ipv4_address.split("/")[0]
            until(lambda: ping_all(one, [peer]) == [], "the other sandbox answers", timeout=10)
            for name in ("r1", "r2"):
                c.delete_sandbox(name)
            c.delete_network("mvre")
            assert ns not in _names()
    finally:
        netns.delete(orphan)


def test_cleanup_removes_a_hosts_isolated_parents_only(netns_prefix):
    ours = f"{netns_prefix}mv-h9-0123456789ab"
    other_host = f"{netns_prefix}mv-h8-0123456789ab"
    for name in (ours, other_host):
        run("ip", "netns", "add", name)
    try:
        assert macvlan.cleanup(host_id="h9", netns_prefix=netns_prefix) == []
        assert ours not in _names() and other_host in _names()
    finally:
        for name in (ours, other_host):
            netns.delete(name)
