"""GarbageCollect with half of the sandboxes listed: the other half is fully
released (sandboxes, endpoints, addresses, namespaces, links); the listed
half keeps working."""

from __future__ import annotations

import grpc
import pytest
from controller_env import T, ping_all, sandbox_netns

from cnm.controller.v1 import controller_pb2 as pb
from cnm.ipam.v1 import ipam_pb2, ipam_pb2_grpc
from cnm.types.v1 import types_pb2
from driver_service.osl.query import TOMBSTONE_PREFIX
from harness import kernel_snapshot, netns
from harness.world import FAST_FAILOVER, single_host


@pytest.fixture
def world(spawn, redis_url, netns_prefix, netns_host):
    with single_host(
        spawn, redis_url, netns_host, netns_prefix, tmp_prefix="cnmg", controller_env=FAST_FAILOVER
    ) as w:
        yield w


def _owners(world, network_id: str) -> set[str]:
    with grpc.insecure_channel(world.ipam) as ch:
        ipam = ipam_pb2_grpc.IpamStub(ch)
        pools = ipam.ListPools(ipam_pb2.ListPoolsRequest(), timeout=T).pools
        pool_id = next(p.pool_id for p in pools if p.owner == network_id)
        allocs = ipam.ListAllocations(ipam_pb2.ListAllocationsRequest(pool_id=pool_id), timeout=T)
    return {a.owner for a in allocs.allocations}


def _host_links(world) -> set[str]:
    """Links of host h1, without tombstones: a left veth is renamed `cnmgc<ifindex>`,
    down and detached at once, and deleted by a background thread a moment later."""
    out = netns.run("ip", "-n", world.hosts["h1"].netns, "-o", "link", "show").stdout
    names = {line.split(": ")[1].split("@")[0] for line in out.splitlines()}
    return {n for n in names if not n.startswith(TOMBSTONE_PREFIX)}


def test_garbage_collect_releases_everything_of_unlisted_sandboxes(world):
    c = world.stub()
    ipam = pb.IpamSpec(configs=[types_pb2.IpamConfig(subnet="10.84.0.0/24")])
    net = c.CreateNetwork(pb.CreateNetworkRequest(name="gcnet", ipam=ipam), timeout=T)
    c.CreateNetwork(pb.CreateNetworkRequest(name="gcnet2"), timeout=T)
    links_before = _host_links(world)
    sbs, eps = [], {}
    for i in range(6):
        sb = c.CreateSandbox(pb.CreateSandboxRequest(name=f"g{i}"), timeout=T)
        sbs.append(sb)
        eps[sb.id] = [c.Connect(pb.ConnectRequest(network="gcnet", sandbox=sb.id), timeout=T)]
        # An explicitly created endpoint, joined: GC takes it too.
        ep = c.CreateEndpoint(
            pb.CreateEndpointRequest(network="gcnet2", spec=pb.EndpointSpec(name=f"x{i}")),
            timeout=T,
        )
        eps[sb.id].append(c.Join(pb.JoinRequest(endpoint_id=ep.id, sandbox=sb.id), timeout=T))
    spare = c.CreateEndpoint(
        pb.CreateEndpointRequest(network="gcnet", spec=pb.EndpointSpec(name="unattached")),
        timeout=T,
    )
    keep, drop = sbs[:3], sbs[3:]

    resp = c.GarbageCollect(
        pb.GarbageCollectRequest(valid_sandbox_ids=[s.id for s in keep]), timeout=60
    )

    assert sorted(resp.removed_sandbox_ids) == sorted(s.id for s in drop)
    dropped_eps = {e.id for s in drop for e in eps[s.id]}
    assert set(resp.removed_endpoint_ids) == dropped_eps
    left = {s.name for s in c.ListSandboxes(pb.ListSandboxesRequest(), timeout=T).sandboxes}
    assert left == {s.name for s in keep}
    remaining = {e.id for e in c.ListEndpoints(pb.ListEndpointsRequest(), timeout=T).endpoints}
    assert remaining == {e.id for s in keep for e in eps[s.id]} | {spare.id}
    # Their addresses are free again; the kept ones and the gateway are not.
    owners = _owners(world, net.id)
    assert not owners & dropped_eps
    assert {e.id for s in keep for e in eps[s.id] if e.network_id == net.id} <= owners
    # Their namespaces and links are gone.
    namespaces = netns.run("ip", "netns", "list").stdout
    for sb in drop:
        assert sandbox_netns(sb) not in namespaces
    for sb in keep:
        assert sandbox_netns(sb) in namespaces
    veths = _host_links(world) - links_before
    assert len(veths) == 2 * len(keep)  # one host end per joined endpoint
    # The kept half still talks.
    peers = [eps[s.id][0].ipv4_address.split("/")[0] for s in keep[1:]]
    assert ping_all(sandbox_netns(keep[0]), peers) == []
    assert kernel_snapshot.TEST_TAG in sandbox_netns(keep[0])

    # Idempotent: a second run with the same list removes nothing.
    again = c.GarbageCollect(
        pb.GarbageCollectRequest(valid_sandbox_ids=[s.id for s in keep]), timeout=60
    )
    assert list(again.removed_sandbox_ids) == [] and list(again.removed_endpoint_ids) == []
