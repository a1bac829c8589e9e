"""Two controller replicas and 8 concurrent callers connecting 200 sandboxes
to one network: 200 distinct addresses, all reachable."""

from __future__ import annotations

import ipaddress
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from controller_env import T, ping_all, sandbox_netns

from cnm.controller.v1 import controller_pb2 as pb
from cnm.types.v1 import types_pb2
from harness import netns
from harness.world import FAST_FAILOVER, World

SANDBOXES = 200
CALLERS = 8


@pytest.fixture
def world(spawn, redis_url, netns_prefix, netns_host):
    w = World(spawn, redis_url, netns_prefix, tmp_prefix="cnmp", controller_env=FAST_FAILOVER)
    try:
        w.add_host("h1", netns=netns_host).start_ipam()
        w.start_controller("c1")
        w.start_controller("c2")
        yield w
    finally:
        _teardown(w, netns_prefix)


def _teardown(w: World, netns_prefix: str) -> None:
    """Removes what the test made without 200 more API calls: the driver
    service's Join and DeleteSandbox rewrite the hosts file of every sandbox
    on the network (O(n) each), so tearing down through the API would take
    longer than the test. With the driver stopped, the sandbox namespaces
    (named with this run's prefix) are deleted; the host namespace, with the
    bridge and every veth host end, goes with the netns_host fixture; Redis is
    flushed before the next test."""
    w.close(through_api=False)
    for line in netns.run("ip", "netns", "list").stdout.splitlines():
        name = line.split()[0]
        if name.startswith(netns_prefix):
            netns.delete(name)


def test_two_replicas_eight_callers_connect_200_sandboxes(world):
    stubs = [world.stub("c1"), world.stub("c2")]
    stubs[0].CreateNetwork(
        pb.CreateNetworkRequest(
            name="crowd", ipam=pb.IpamSpec(configs=[types_pb2.IpamConfig(subnet="10.83.0.0/24")])
        ),
        timeout=T,
    )

    def connect(i: int) -> tuple[pb.Sandbox, pb.Endpoint]:
        # Alternate replicas per call, so both serve every kind of request.
        sb = stubs[i % 2].CreateSandbox(pb.CreateSandboxRequest(name=f"sb{i}"), timeout=30)
        ep = stubs[(i + 1) % 2].Connect(
            pb.ConnectRequest(network="crowd", sandbox=sb.id), timeout=30
        )
        return sb, ep

    started = time.monotonic()
    with ThreadPoolExecutor(CALLERS) as pool:
        results = list(pool.map(connect, range(SANDBOXES)))
    elapsed = time.monotonic() - started
    print(f"{SANDBOXES} sandboxes created and connected in {elapsed:.1f}s")

    addresses = [ep.ipv4_address.split("/")[0] for _sb, ep in results]
    assert len(set(addresses)) == SANDBOXES
    assert all(ipaddress.ip_address(a) in ipaddress.ip_network("10.83.0.0/24") for a in addresses)
    assert all(ep.state == pb.ENDPOINT_STATE_JOINED for _sb, ep in results)
    net = stubs[1].GetNetwork(pb.GetNetworkRequest(id_or_name="crowd"), timeout=T)
    assert len(net.endpoint_ids) == SANDBOXES
    assert net.subnets[0].ips_in_use == SANDBOXES + 1  # and the gateway

    # All reachable: one sandbox pings every other one, and the last one pings the first.
    started = time.monotonic()
    first, last = sandbox_netns(results[0][0]), sandbox_netns(results[-1][0])
    assert ping_all(first, addresses[1:]) == []
    assert ping_all(last, addresses[:1]) == []
    print(f"{SANDBOXES} pings in {time.monotonic() - started:.1f}s")
