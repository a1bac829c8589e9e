"""kill -9 of the controller in the middle of Connect, between the IPAM
allocation and the driver's Join: a restarted controller's reconciler rolls
the connection back within seconds, and the address is free again."""

from __future__ import annotations

import grpc
import pytest
from controller_env import T, kernel_view

from cnm.controller.v1 import controller_pb2 as pb
from cnm.ipam.v1 import ipam_pb2, ipam_pb2_grpc
from cnm.types.v1 import types_pb2
from harness import kernel_snapshot
from harness.wait import until
from harness.world import FAST_FAILOVER, World


@pytest.fixture
def world(spawn, redis_url, netns_prefix, netns_host):
    w = World(spawn, redis_url, netns_prefix, tmp_prefix="cnmk", controller_env=FAST_FAILOVER)
    try:
        w.add_host("h1", netns=netns_host).start_ipam()
        yield w
    finally:
        w.close()  # through a controller still running (the survivor), if any


def _owned(world, pool_id: str, owner: str) -> list[str]:
    with grpc.insecure_channel(world.ipam) as ch:
        allocs = ipam_pb2_grpc.IpamStub(ch).ListAllocations(
            ipam_pb2.ListAllocationsRequest(pool_id=pool_id), timeout=T
        )
    return [a.address for a in allocs.allocations if a.owner == owner]


def _pool_of(world, network_id: str) -> str:
    with grpc.insecure_channel(world.ipam) as ch:
        pools = ipam_pb2_grpc.IpamStub(ch).ListPools(ipam_pb2.ListPoolsRequest(), timeout=T)
    return next(p.pool_id for p in pools.pools if p.owner == network_id)


@pytest.mark.parametrize(
    "point",
    [
        pytest.param("after_ipam", id="after-ipam-allocation"),
        pytest.param("endpoint_after_driver", id="after-driver-create-endpoint"),
        # Past the join, but before it was recorded: the veth must go too.
        pytest.param("after_join", id="after-driver-join"),
    ],
)
def test_killed_mid_connect_is_rolled_back_by_the_next_controller(world, point):
    world.start_controller("doomed", env={"CNM_TEST_CRASH_AT": point})
    c = world.stub("doomed")
    subnet = "10.82.0.0/24"
    net = c.CreateNetwork(
        pb.CreateNetworkRequest(
            name="n", ipam=pb.IpamSpec(configs=[types_pb2.IpamConfig(subnet=subnet)])
        ),
        timeout=T,
    )
    c.CreateSandbox(pb.CreateSandboxRequest(name="victim"), timeout=T)
    hosts = [h.netns for h in world.hosts.values()]
    kernel_before = kernel_view(hosts, kernel_snapshot.TEST_TAG)

    with pytest.raises(grpc.RpcError) as err:
        c.Connect(pb.ConnectRequest(network="n", sandbox="victim"), timeout=T)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    assert world.procs["doomed"].wait(5) == 137

    # The intent and its address are there, owned by a dead controller.
    import redis

    r = redis.Redis.from_url(world.redis_url, decode_responses=True)
    intents = r.zrange("cnm:controller:intents", 0, -1)
    assert len(intents) == 1 and intents[0].startswith("ep:")
    ep_id = intents[0][3:]
    pool_id = _pool_of(world, net.id)
    assert len(_owned(world, pool_id, ep_id)) == 1

    world.start_controller("survivor")
    s = world.stub("survivor")
    until(
        lambda: (
            not s.ListEndpoints(pb.ListEndpointsRequest(), timeout=T).endpoints
            and not r.zrange("cnm:controller:intents", 0, -1)
        ),
        "endpoint rolled back",
        timeout=15,
    )
    assert _owned(world, pool_id, ep_id) == []
    got = s.GetNetwork(pb.GetNetworkRequest(id_or_name="n"), timeout=T)
    assert got.subnets[0].ips_in_use == 1  # the gateway only
    assert list(got.endpoint_ids) == []
    sb = s.GetSandbox(pb.GetSandboxRequest(id_or_name="victim"), timeout=T)
    assert list(sb.endpoints) == []
    assert kernel_view(hosts, kernel_snapshot.TEST_TAG) == kernel_before

    # And the sandbox can be connected again.
    ep = s.Connect(pb.ConnectRequest(network="n", sandbox="victim"), timeout=T)
    assert ep.state == pb.ENDPOINT_STATE_JOINED
    r.close()


def _loose(c) -> str:
    eps = c.ListEndpoints(pb.ListEndpointsRequest(network="n"), timeout=T).endpoints
    return next(e.id for e in eps if e.name == "loose")


def _world_view(world, s) -> dict:
    """What the API, IPAM and the hosts' kernels show."""
    with grpc.insecure_channel(world.ipam) as ch:
        pools = ipam_pb2_grpc.IpamStub(ch).ListPools(ipam_pb2.ListPoolsRequest(), timeout=T).pools
    return {
        "networks": sorted(
            n.name for n in s.ListNetworks(pb.ListNetworksRequest(), timeout=T).networks
        ),
        "sandboxes": sorted(
            x.name for x in s.ListSandboxes(pb.ListSandboxesRequest(), timeout=T).sandboxes
        ),
        "endpoints": sorted(
            (e.name, e.state, e.sandbox_id)
            for e in s.ListEndpoints(pb.ListEndpointsRequest(), timeout=T).endpoints
        ),
        "pools": sorted((p.pool, p.used) for p in pools),
        "kernel": kernel_view([h.netns for h in world.hosts.values()], kernel_snapshot.TEST_TAG),
    }


@pytest.mark.parametrize(
    ("point", "action"),
    [
        # Disconnect dies after the driver's Leave: finished (the endpoint goes).
        pytest.param(
            "endpoint_delete_after_leave",
            lambda c: c.Disconnect(pb.DisconnectRequest(network="n", sandbox="victim"), timeout=T),
            id="disconnect-after-leave-is-finished",
        ),
        # Join of an existing endpoint dies after the driver's Join: rolled back
        # (the endpoint is ready again, its veth gone).
        pytest.param(
            "after_join",
            lambda c: c.Join(pb.JoinRequest(endpoint_id=_loose(c), sandbox="spare"), timeout=T),
            id="join-after-driver-is-rolled-back",
        ),
        # CreateSandbox dies after the driver made the namespace: rolled back.
        pytest.param(
            "sandbox_after_driver",
            lambda c: c.CreateSandbox(pb.CreateSandboxRequest(name="late"), timeout=T),
            id="create-sandbox-after-driver-is-rolled-back",
        ),
        # CreateNetwork dies with its pool and gateway taken: rolled back.
        pytest.param(
            "network_after_ipam",
            lambda c: c.CreateNetwork(
                pb.CreateNetworkRequest(
                    name="late",
                    ipam=pb.IpamSpec(configs=[types_pb2.IpamConfig(subnet="10.82.7.0/24")]),
                ),
                timeout=T,
            ),
            id="create-network-after-ipam-is-rolled-back",
        ),
    ],
)
def test_killed_mid_other_operations_ends_as_if_it_completed_or_never_began(world, point, action):
    setup = world.start_controller("setup")
    s0 = world.stub("setup")
    s0.CreateNetwork(
        pb.CreateNetworkRequest(
            name="n", ipam=pb.IpamSpec(configs=[types_pb2.IpamConfig(subnet="10.82.0.0/24")])
        ),
        timeout=T,
    )
    s0.CreateSandbox(pb.CreateSandboxRequest(name="victim"), timeout=T)
    s0.CreateSandbox(pb.CreateSandboxRequest(name="spare"), timeout=T)
    s0.CreateEndpoint(
        pb.CreateEndpointRequest(network="n", spec=pb.EndpointSpec(name="loose")), timeout=T
    )
    untouched = _world_view(world, s0)
    s0.Connect(pb.ConnectRequest(network="n", sandbox="victim"), timeout=T)
    before = _world_view(world, s0)
    world.stop("setup")
    assert setup

    world.start_controller("doomed", env={"CNM_TEST_CRASH_AT": point})
    with pytest.raises(grpc.RpcError) as err:
        action(world.stub("doomed"))
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    assert world.procs["doomed"].wait(5) == 137

    world.start_controller("survivor")
    s = world.stub("survivor")
    import redis

    r = redis.Redis.from_url(world.redis_url, decode_responses=True)
    until(lambda: not r.zrange("cnm:controller:intents", 0, -1), "settled", timeout=10)
    r.close()
    expected = untouched if point == "endpoint_delete_after_leave" else before
    assert _world_view(world, s) == expected


def test_driver_dying_mid_join_leaves_an_intent_the_reconciler_undoes_once_it_is_back(world):
    """The controller lives, the host's driver service dies inside Join: the
    controller's own rollback cannot reach it, so it hands the intent to the
    reconciler, which undoes the connection once the driver is back."""
    world.stop_host("h1")
    world.start_host("h1", env={"CNM_TEST_CRASH_AT": "after_veth"})
    world.start_controller("survivor")
    s = world.stub("survivor")
    s.CreateNetwork(
        pb.CreateNetworkRequest(
            name="n", ipam=pb.IpamSpec(configs=[types_pb2.IpamConfig(subnet="10.82.0.0/24")])
        ),
        timeout=T,
    )
    s.CreateSandbox(pb.CreateSandboxRequest(name="victim"), timeout=T)
    before = _world_view(world, s)

    with pytest.raises(grpc.RpcError) as err:
        s.Connect(pb.ConnectRequest(network="n", sandbox="victim"), timeout=T)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    assert world.hosts["h1"].proc.wait(5) == 137
    assert world.procs["survivor"].poll() is None
    endpoints = s.ListEndpoints(pb.ListEndpointsRequest(), timeout=T).endpoints
    assert [e.state for e in endpoints] == [pb.ENDPOINT_STATE_CREATING]

    world.start_host("h1")
    until(
        lambda: not s.ListEndpoints(pb.ListEndpointsRequest(), timeout=T).endpoints,
        "connection undone",
        timeout=15,
    )
    assert _world_view(world, s) == before
    ep = s.Connect(pb.ConnectRequest(network="n", sandbox="victim"), timeout=T)
    assert ep.state == pb.ENDPOINT_STATE_JOINED
