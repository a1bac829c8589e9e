"""Every rule of the controller with its exact status code, and nothing
changed after each error: neither a stored fact (Redis, IPAM included) nor
a link or namespace on the hosts."""

from __future__ import annotations

import grpc
import pytest
from controller_env import T, kernel_view, snapshot

from cnm.controller.v1 import controller_pb2 as pb
from cnm.types.v1 import types_pb2
from harness import kernel_snapshot
from harness.world import FAST_FAILOVER, World

C = grpc.StatusCode


@pytest.fixture(scope="module")
def world(redis_server, netns_prefix):
    """Two hosts (h1, h2) with a network, a connected sandbox and a free
    endpoint on h1. Shared by the module: every case must change nothing,
    which is exactly what each one asserts."""
    import redis

    from conftest import Spawner

    client = redis.Redis.from_url(redis_server)
    client.flushall()
    client.close()
    w = World(
        Spawner(), redis_server, netns_prefix, tmp_prefix="cnmr", controller_env=FAST_FAILOVER
    )
    try:
        w.add_host("h1", start=False).add_host("h2", start=False).build()
        stub = w.stub()
        ipam = pb.IpamSpec(configs=[types_pb2.IpamConfig(subnet="10.79.0.0/29")])
        stub.CreateNetwork(pb.CreateNetworkRequest(name="n1", host="h1", ipam=ipam), timeout=T)
        for name, host in (("s1", "h1"), ("s2", "h1"), ("far", "h2")):
            stub.CreateSandbox(pb.CreateSandboxRequest(name=name, host=host), timeout=T)
        stub.Connect(pb.ConnectRequest(network="n1", sandbox="s1"), timeout=T)
        stub.CreateEndpoint(
            pb.CreateEndpointRequest(network="n1", spec=pb.EndpointSpec(name="free")), timeout=T
        )
        yield w
    finally:
        w.close()


def _ep_id(c, name: str) -> str:
    eps = c.ListEndpoints(pb.ListEndpointsRequest(network="n1"), timeout=T).endpoints
    return next(e.id for e in eps if e.name == name)


def _ipam(*subnets: str) -> pb.IpamSpec:
    return pb.IpamSpec(configs=[types_pb2.IpamConfig(subnet=s) for s in subnets])


# Each case: (call(stub) -> None, expected code, words the message must contain)
CASES = [
    pytest.param(
        lambda c: c.CreateNetwork(pb.CreateNetworkRequest(name="bad.name", host="h1"), timeout=T),
        C.INVALID_ARGUMENT,
        "invalid network name",
        id="network-name-with-dot",
    ),
    pytest.param(
        lambda c: c.CreateNetwork(pb.CreateNetworkRequest(name="x" * 65, host="h1"), timeout=T),
        C.INVALID_ARGUMENT,
        "invalid network name",
        id="network-name-too-long",
    ),
    pytest.param(
        lambda c: c.CreateNetwork(pb.CreateNetworkRequest(name="n1", host="h1"), timeout=T),
        C.ALREADY_EXISTS,
        "'n1' is already taken",
        id="network-name-taken",
    ),
    pytest.param(
        lambda c: c.CreateNetwork(
            pb.CreateNetworkRequest(name="n2", host="h1", ipam=_ipam("10.79.0.0/33")), timeout=T
        ),
        C.INVALID_ARGUMENT,
        "invalid subnet",
        id="bad-cidr",
    ),
    pytest.param(
        lambda c: c.CreateNetwork(
            pb.CreateNetworkRequest(name="n2", host="h1", ipam=_ipam("10.79.0.0/24")), timeout=T
        ),
        C.ALREADY_EXISTS,
        "10.79.0.0",
        id="subnet-overlaps-another-network",
    ),
    pytest.param(
        lambda c: c.CreateNetwork(
            pb.CreateNetworkRequest(
                name="n2", host="h1", ipam=_ipam("10.80.0.0/24", "10.79.0.0/24")
            ),
            timeout=T,
        ),
        C.ALREADY_EXISTS,
        "10.79.0.0",
        id="second-subnet-overlaps-first-is-released",
    ),
    pytest.param(
        lambda c: c.CreateNetwork(
            pb.CreateNetworkRequest(
                name="n2", host="h1", options={"com.docker.network.driver.mtu": "abc"}
            ),
            timeout=T,
        ),
        C.INVALID_ARGUMENT,
        "mtu",
        id="driver-rejects-option-pool-is-released",
    ),
    pytest.param(
        lambda c: c.CreateNetwork(pb.CreateNetworkRequest(name="n2", driver="nope"), timeout=T),
        C.NOT_FOUND,
        "no such driver 'nope'",
        id="unknown-driver",
    ),
    pytest.param(
        lambda c: c.CreateNetwork(pb.CreateNetworkRequest(name="n2", host="h9"), timeout=T),
        C.NOT_FOUND,
        "no such host 'h9'",
        id="unknown-host",
    ),
    pytest.param(
        lambda c: c.CreateNetwork(pb.CreateNetworkRequest(name="n2"), timeout=T),
        C.FAILED_PRECONDITION,
        "several ready hosts",
        id="local-network-without-host-among-two",
    ),
    pytest.param(
        lambda c: c.GetNetwork(pb.GetNetworkRequest(id_or_name="ghost"), timeout=T),
        C.NOT_FOUND,
        "no such network 'ghost'",
        id="get-unknown-network",
    ),
    pytest.param(
        lambda c: c.DeleteNetwork(pb.DeleteNetworkRequest(id_or_name="n1"), timeout=T),
        C.FAILED_PRECONDITION,
        "has active endpoints: free",
        id="delete-network-with-endpoints",
    ),
    pytest.param(
        lambda c: c.CreateEndpoint(
            pb.CreateEndpointRequest(network="n1", spec=pb.EndpointSpec(name="free")), timeout=T
        ),
        C.ALREADY_EXISTS,
        "endpoint name 'free' is already taken",
        id="endpoint-name-taken",
    ),
    pytest.param(
        lambda c: c.CreateEndpoint(
            pb.CreateEndpointRequest(network="n1", spec=pb.EndpointSpec(ipv4_address="10.9.9.9")),
            timeout=T,
        ),
        C.INVALID_ARGUMENT,
        "not in any subnet",
        id="static-address-outside-pool",
    ),
    pytest.param(
        lambda c: c.CreateEndpoint(
            pb.CreateEndpointRequest(network="n1", spec=pb.EndpointSpec(ipv4_address="10.79.0.1")),
            timeout=T,
        ),
        C.ALREADY_EXISTS,
        "10.79.0.1",
        id="static-address-taken-by-gateway",
    ),
    pytest.param(
        lambda c: c.CreateEndpoint(
            pb.CreateEndpointRequest(network="n1", spec=pb.EndpointSpec(mac_address="zz")),
            timeout=T,
        ),
        C.INVALID_ARGUMENT,
        "mac_address",
        id="bad-mac",
    ),
    pytest.param(
        lambda c: c.CreateEndpoint(
            pb.CreateEndpointRequest(network="ghost", spec=pb.EndpointSpec()), timeout=T
        ),
        C.NOT_FOUND,
        "no such network 'ghost'",
        id="endpoint-on-unknown-network",
    ),
    pytest.param(
        lambda c: c.Join(pb.JoinRequest(endpoint_id=_ep_id(c, "s1"), sandbox="s2"), timeout=T),
        C.FAILED_PRECONDITION,
        "already joined",
        id="endpoint-joins-a-second-sandbox",
    ),
    pytest.param(
        lambda c: c.Join(pb.JoinRequest(endpoint_id=_ep_id(c, "free"), sandbox="s1"), timeout=T),
        C.FAILED_PRECONDITION,
        "already on network 'n1'",
        id="sandbox-joins-network-twice",
    ),
    pytest.param(
        lambda c: c.Connect(pb.ConnectRequest(network="n1", sandbox="s1"), timeout=T),
        C.FAILED_PRECONDITION,
        "already on network 'n1'",
        id="connect-twice",
    ),
    pytest.param(
        lambda c: c.Connect(pb.ConnectRequest(network="n1", sandbox="far"), timeout=T),
        C.FAILED_PRECONDITION,
        "local to host 'h1'",
        id="local-network-and-sandbox-on-other-host",
    ),
    pytest.param(
        lambda c: c.Join(pb.JoinRequest(endpoint_id=_ep_id(c, "free"), sandbox="far"), timeout=T),
        C.FAILED_PRECONDITION,
        "local to host 'h1'",
        id="join-across-hosts",
    ),
    pytest.param(
        lambda c: c.Connect(pb.ConnectRequest(network="n1", sandbox="ghost"), timeout=T),
        C.NOT_FOUND,
        "no such sandbox 'ghost'",
        id="connect-unknown-sandbox",
    ),
    pytest.param(
        lambda c: c.Join(pb.JoinRequest(endpoint_id="f" * 64, sandbox="s2"), timeout=T),
        C.NOT_FOUND,
        "no such endpoint",
        id="join-unknown-endpoint",
    ),
    pytest.param(
        lambda c: c.Leave(pb.LeaveRequest(endpoint_id=_ep_id(c, "s1"), sandbox="s2"), timeout=T),
        C.FAILED_PRECONDITION,
        "not 's2'",
        id="leave-from-the-wrong-sandbox",
    ),
    pytest.param(
        lambda c: c.Disconnect(pb.DisconnectRequest(network="n1", sandbox="s2"), timeout=T),
        C.NOT_FOUND,
        "not connected",
        id="disconnect-not-connected",
    ),
    pytest.param(
        lambda c: c.CreateSandbox(pb.CreateSandboxRequest(name="s1", host="h1"), timeout=T),
        C.ALREADY_EXISTS,
        "sandbox name 's1' is already taken",
        id="sandbox-name-taken",
    ),
    pytest.param(
        lambda c: c.CreateSandbox(pb.CreateSandboxRequest(name="a b", host="h1"), timeout=T),
        C.INVALID_ARGUMENT,
        "invalid sandbox name",
        id="bad-sandbox-name",
    ),
    pytest.param(
        lambda c: c.CreateSandbox(
            pb.CreateSandboxRequest(name="s9", host="h1", external_key="/proc/self/ns/pid"),
            timeout=T,
        ),
        C.INVALID_ARGUMENT,
        "",
        id="external-key-not-a-network-namespace",
    ),
    pytest.param(
        lambda c: c.CreateSandbox(pb.CreateSandboxRequest(name="s9"), timeout=T),
        C.FAILED_PRECONDITION,
        "several ready hosts",
        id="sandbox-without-host-among-two",
    ),
    pytest.param(
        lambda c: c.DeleteSandbox(pb.DeleteSandboxRequest(id_or_name="ghost"), timeout=T),
        C.NOT_FOUND,
        "no such sandbox 'ghost'",
        id="delete-unknown-sandbox",
    ),
    pytest.param(
        lambda c: c.DeleteEndpoint(pb.DeleteEndpointRequest(id="0" * 64), timeout=T),
        C.NOT_FOUND,
        "no such endpoint",
        id="delete-unknown-endpoint",
    ),
    pytest.param(
        lambda c: c.GetHost(pb.GetHostRequest(id="h9"), timeout=T),
        C.NOT_FOUND,
        "no such host 'h9'",
        id="unknown-host-get",
    ),
    pytest.param(
        lambda c: c.GarbageCollect(pb.GarbageCollectRequest(valid_sandbox_ids=["s1"]), timeout=T),
        C.INVALID_ARGUMENT,
        "64 hex",
        id="gc-with-a-name-instead-of-an-id",
    ),
    pytest.param(
        lambda c: c.ListNetworks(pb.ListNetworksRequest(page_token="garbage!"), timeout=T),
        C.INVALID_ARGUMENT,
        "page_token",
        id="bad-page-token",
    ),
]


@pytest.mark.parametrize(("call", "code", "words"), CASES)
def test_rule_has_its_code_and_changes_nothing(world, call, code, words):
    c = world.stub()
    hosts = [h.netns for h in world.hosts.values()]
    before = (snapshot(world.redis_url), kernel_view(hosts, kernel_snapshot.TEST_TAG))
    with pytest.raises(grpc.RpcError) as err:
        call(c)
    assert err.value.code() == code, err.value.details()
    assert words in err.value.details()
    after = (snapshot(world.redis_url), kernel_view(hosts, kernel_snapshot.TEST_TAG))
    assert after == before


def test_join_and_leave_are_idempotent(world):
    c = world.stub()
    ep_id = _ep_id(c, "s1")
    again = c.Join(pb.JoinRequest(endpoint_id=ep_id, sandbox="s1"), timeout=T)
    assert again.state == pb.ENDPOINT_STATE_JOINED
    free = _ep_id(c, "free")
    before = snapshot(world.redis_url)
    left = c.Leave(pb.LeaveRequest(endpoint_id=free, sandbox="s2"), timeout=T)
    assert left.state == pb.ENDPOINT_STATE_READY
    assert snapshot(world.redis_url) == before


def test_pool_exhausted_is_resource_exhausted_and_changes_nothing(world):
    c = world.stub()
    # 10.79.0.0/29: gateway .1, s1 took .2, "free" took .3; .4 .5 .6 remain.
    for name in ("e4", "e5", "e6"):
        c.CreateEndpoint(
            pb.CreateEndpointRequest(network="n1", spec=pb.EndpointSpec(name=name)), timeout=T
        )
    try:
        before = snapshot(world.redis_url)
        with pytest.raises(grpc.RpcError) as err:
            c.Connect(pb.ConnectRequest(network="n1", sandbox="s2"), timeout=T)
        assert err.value.code() == C.RESOURCE_EXHAUSTED
        assert "n1" in err.value.details()
        assert snapshot(world.redis_url) == before
    finally:
        for name in ("e4", "e5", "e6"):
            c.DeleteEndpoint(pb.DeleteEndpointRequest(id=_ep_id(c, name)), timeout=T)
