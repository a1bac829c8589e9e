"""The controller through its gRPC API against real Redis, IPAM and a driver
service in a namespace "host": the full lifecycle with real pings."""

from __future__ import annotations

import grpc
import pytest
from cnm.controller.v1 import controller_pb2 as pb
from cnm.types.v1 import types_pb2
from controller_env import T, World, addresses_in, ping_all, remove_run_dir, sandbox_netns
from harness import stack


@pytest.fixture
def world(spawn, redis_url, netns_prefix, netns_host):
    w = World(spawn, redis_url, netns_prefix, stack.short_tmp("cnmc"))
    stub = None
    try:
        w.start_ipam()
        w.start_driver("h1", netns_host)
        w.start_controller()
        stub = w.stub()
        yield w
    finally:
        w.cleanup(stub)
        remove_run_dir(w.run_dir)


def test_full_lifecycle_network_sandboxes_connect_ping_disconnect_delete(world):
    c = world.stub()
    net = c.CreateNetwork(
        pb.CreateNetworkRequest(
            name="front",
            ipam=pb.IpamSpec(configs=[types_pb2.IpamConfig(subnet="10.77.0.0/24")]),
            labels={"tier": "web"},
        ),
        timeout=T,
    )
    assert net.scope == types_pb2.SCOPE_LOCAL and net.host == "h1"
    assert (
        net.ipam.configs[0].subnet == "10.77.0.0/24" and net.ipam.configs[0].gateway == "10.77.0.1"
    )

    sbs = [
        c.CreateSandbox(pb.CreateSandboxRequest(name=f"box{i}", hostname=f"box{i}"), timeout=T)
        for i in range(2)
    ]
    eps = [c.Connect(pb.ConnectRequest(network="front", sandbox=sb.name), timeout=T) for sb in sbs]
    for ep, sb in zip(eps, sbs, strict=True):
        assert ep.state == pb.ENDPOINT_STATE_JOINED and ep.sandbox_id == sb.id
        assert ep.name == sb.name and ep.interface_name and ep.gateway == "10.77.0.1"
        assert ep.ipv4_address.startswith("10.77.0.") and ep.ipv4_address.endswith("/24")
        assert ep.ipv4_address.split("/")[0] in addresses_in(sandbox_netns(sb))
    assert eps[0].ipv4_address != eps[1].ipv4_address

    peer = eps[1].ipv4_address.split("/")[0]
    assert ping_all(sandbox_netns(sbs[0]), [peer]) == []

    got = c.GetNetwork(pb.GetNetworkRequest(id_or_name="front"), timeout=T)
    assert sorted(got.endpoint_ids) == sorted(e.id for e in eps)
    # gateway + two endpoints in use
    assert got.subnets[0].subnet == "10.77.0.0/24" and got.subnets[0].ips_in_use == 3
    sb = c.GetSandbox(pb.GetSandboxRequest(id_or_name="box0"), timeout=T)
    assert [e.id for e in sb.endpoints] == [eps[0].id] and sb.key

    c.Disconnect(pb.DisconnectRequest(network="front", sandbox="box0"), timeout=T)
    assert ping_all(sandbox_netns(sbs[1]), [eps[0].ipv4_address.split("/")[0]]) != []
    with pytest.raises(grpc.RpcError) as e:
        c.GetEndpoint(pb.GetEndpointRequest(id=eps[0].id), timeout=T)
    assert e.value.code() == grpc.StatusCode.NOT_FOUND

    for sb in sbs:
        c.DeleteSandbox(pb.DeleteSandboxRequest(id_or_name=sb.id), timeout=T)
    # box1's endpoint was made by Connect: it went with its sandbox.
    assert c.ListEndpoints(pb.ListEndpointsRequest(), timeout=T).endpoints == []
    c.DeleteNetwork(pb.DeleteNetworkRequest(id_or_name=net.id), timeout=T)
    assert c.ListNetworks(pb.ListNetworksRequest(), timeout=T).networks == []
    assert c.GetNetwork  # noqa: B018
