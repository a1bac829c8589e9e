"""The controller through its gRPC API against real Redis, IPAM and a driver
service in a namespace "host": the full lifecycle with real pings."""

from __future__ import annotations

import threading

import grpc
import pytest
from controller_env import T, addresses_in, ping_all, sandbox_netns

from cnm.controller.v1 import controller_pb2 as pb
from cnm.events.v1 import events_pb2
from cnm.types.v1 import types_pb2
from harness import netns
from harness.world import FAST_FAILOVER, single_host


@pytest.fixture
def world(spawn, redis_url, netns_prefix, netns_host):
    with single_host(
        spawn, redis_url, netns_host, netns_prefix, tmp_prefix="cnmc", controller_env=FAST_FAILOVER
    ) as w:
        yield w


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


def _net(c, name: str, subnet: str = "", **kw) -> pb.Network:
    configs = [types_pb2.IpamConfig(subnet=subnet)] if subnet else []
    return c.CreateNetwork(
        pb.CreateNetworkRequest(name=name, ipam=pb.IpamSpec(configs=configs), **kw), timeout=T
    )


def test_get_and_list_by_id_name_prefix_filters_pages_and_prune(world):
    c = world.stub()
    a = _net(c, "alpha", "10.78.1.0/24", labels={"env": "prod"})
    b = _net(c, "beta", labels={"env": "dev"})  # a predefined pool
    assert b.ipam.configs[0].subnet and b.ipam.configs[0].gateway
    for text in (a.id, "alpha", a.id[:6]):
        assert c.GetNetwork(pb.GetNetworkRequest(id_or_name=text), timeout=T).id == a.id

    def names(**flt):
        req = pb.ListNetworksRequest(filter=pb.NetworkFilter(**flt))
        return [n.name for n in c.ListNetworks(req, timeout=T).networks]

    assert names() == ["alpha", "beta"]
    assert names(labels=["env=dev"]) == ["beta"]
    assert names(labels=["env"], names=["alp"]) == ["alpha"]
    assert names(ids=[a.id[:8], b.id[:8]], drivers=["bridge"]) == ["alpha", "beta"]
    assert names(scopes=[types_pb2.SCOPE_GLOBAL]) == []
    first = c.ListNetworks(pb.ListNetworksRequest(page_size=1), timeout=T)
    second = c.ListNetworks(
        pb.ListNetworksRequest(page_size=1, page_token=first.next_page_token), timeout=T
    )
    assert [n.name for n in (*first.networks, *second.networks)] == ["alpha", "beta"]
    assert second.next_page_token == ""

    sb = c.CreateSandbox(pb.CreateSandboxRequest(name="keep"), timeout=T)
    ep = c.Connect(pb.ConnectRequest(network="alpha", sandbox="keep"), timeout=T)
    assert c.GetEndpoint(pb.GetEndpointRequest(id=ep.id[:10]), timeout=T).id == ep.id
    assert c.GetSandbox(pb.GetSandboxRequest(id_or_name=sb.id[:10]), timeout=T).name == "keep"
    by_net = c.ListEndpoints(pb.ListEndpointsRequest(network="alpha"), timeout=T).endpoints
    by_sb = c.ListEndpoints(pb.ListEndpointsRequest(sandbox="keep"), timeout=T).endpoints
    assert [e.id for e in by_net] == [e.id for e in by_sb] == [ep.id]

    pruned = c.PruneNetworks(pb.PruneNetworksRequest(), timeout=T)
    assert list(pruned.deleted_ids) == [b.id]
    assert names() == ["alpha"]


def test_request_id_makes_creates_idempotent(world):
    c = world.stub()
    first = _net(c, "once", request_id="req-net-1")
    again = _net(c, "other-name-ignored", request_id="req-net-1")
    assert again.id == first.id and again.name == "once"
    sb1 = c.CreateSandbox(pb.CreateSandboxRequest(name="s1", request_id="req-sb-1"), timeout=T)
    sb2 = c.CreateSandbox(pb.CreateSandboxRequest(name="s1", request_id="req-sb-1"), timeout=T)
    assert sb1.id == sb2.id
    e1 = c.Connect(pb.ConnectRequest(network="once", sandbox="s1", request_id="req-c"), timeout=T)
    e2 = c.Connect(pb.ConnectRequest(network="once", sandbox="s1", request_id="req-c"), timeout=T)
    assert e1.id == e2.id and e1.ipv4_address == e2.ipv4_address
    assert len(c.ListEndpoints(pb.ListEndpointsRequest(), timeout=T).endpoints) == 1
    with pytest.raises(grpc.RpcError) as e:
        c.CreateSandbox(pb.CreateSandboxRequest(name="s2", request_id="req-net-1"), timeout=T)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def _take(stream, n: int) -> list:
    """The first `n` events about networks, endpoints and sandboxes (host
    up/down events come from heartbeats, at their own pace)."""
    out = []
    for event in stream:
        if event.type in (events_pb2.EVENT_TYPE_HOST_UP, events_pb2.EVENT_TYPE_HOST_DOWN):
            continue
        out.append(event)
        if len(out) == n:
            stream.cancel()
            break
    return out


def test_watch_delivers_in_order_and_resumes_from_a_revision(world):
    c = world.stub()
    live = c.Watch(pb.WatchRequest(since_revision=0), timeout=60)
    # The first message says the stream is live: what happens from now on is seen.
    marker = next(live)
    assert marker.type == events_pb2.EVENT_TYPE_WATCH_STARTED
    got: list = []
    reader = threading.Thread(target=lambda: got.extend(_take(live, 6)))
    reader.start()
    net = _net(c, "watched", "10.78.9.0/24")
    sb = c.CreateSandbox(pb.CreateSandboxRequest(name="w1"), timeout=T)
    ep = c.Connect(pb.ConnectRequest(network="watched", sandbox="w1"), timeout=T)
    c.Disconnect(pb.DisconnectRequest(network="watched", sandbox="w1"), timeout=T)
    reader.join(30)
    types = [events_pb2.EventType.Name(e.type) for e in got]
    assert types == [
        "EVENT_TYPE_NETWORK_CREATED",
        "EVENT_TYPE_SANDBOX_CREATED",
        "EVENT_TYPE_ENDPOINT_CREATED",
        "EVENT_TYPE_ENDPOINT_JOINED",
        "EVENT_TYPE_ENDPOINT_LEFT",
        "EVENT_TYPE_ENDPOINT_DELETED",
    ]
    assert [e.id for e in got] == [net.id, sb.id, ep.id, ep.id, ep.id, ep.id]
    revisions = [e.revision for e in got]
    assert revisions == sorted(set(revisions)) and revisions[0] > marker.revision
    assert got[2].attributes["network"] == net.id and got[3].attributes["sandbox"] == sb.id

    # Resume after the third event: exactly the rest, then what happens next.
    # (Host events may sit between them; _take skips those.)
    resumed = c.Watch(pb.WatchRequest(since_revision=revisions[2]), timeout=60)
    assert next(resumed).type == events_pb2.EVENT_TYPE_WATCH_STARTED
    c.DeleteSandbox(pb.DeleteSandboxRequest(id_or_name="w1"), timeout=T)
    rest = _take(resumed, 4)
    assert [e.revision for e in rest[:3]] == revisions[3:]
    assert events_pb2.EventType.Name(rest[3].type) == "EVENT_TYPE_SANDBOX_DELETED"
    assert rest[3].revision > revisions[-1]


def test_hosts_drivers_and_pools_are_listed(world):
    c = world.stub()
    hosts = c.ListHosts(pb.ListHostsRequest(), timeout=T).hosts
    assert [h.id for h in hosts] == ["h1"] and hosts[0].state == pb.HOST_STATE_READY
    assert hosts[0].address == world.hosts["h1"].driver and hosts[0].last_heartbeat.seconds > 0
    assert c.GetHost(pb.GetHostRequest(id="h1"), timeout=T).id == "h1"
    drivers = {d.name: d for d in c.ListDrivers(pb.ListDriversRequest(), timeout=T).drivers}
    assert drivers["bridge"].scope == types_pb2.SCOPE_LOCAL and list(drivers["bridge"].hosts) == [
        "h1"
    ]
    net = _net(c, "pooled", "10.78.3.0/24")
    pools = c.ListPools(pb.ListPoolsRequest(), timeout=T).pools
    mine = [p for p in pools if p.owner == net.id]
    assert len(mine) == 1 and mine[0].pool == "10.78.3.0/24" and mine[0].used == 1


def test_explicit_endpoint_join_leave_rejoin_and_delete_while_joined(world):
    c = world.stub()
    c.CreateNetwork(
        pb.CreateNetworkRequest(
            name="manual",
            enable_ipv6=True,
            ipam=pb.IpamSpec(
                configs=[
                    types_pb2.IpamConfig(subnet="10.78.5.0/24"),
                    types_pb2.IpamConfig(subnet="fd00:78:5::/64"),
                ]
            ),
        ),
        timeout=T,
    )
    a = c.CreateSandbox(pb.CreateSandboxRequest(name="ma"), timeout=T)
    b = c.CreateSandbox(pb.CreateSandboxRequest(name="mb"), timeout=T)
    spec = pb.EndpointSpec(
        name="web",
        ipv4_address="10.78.5.50",
        mac_address="02:42:0a:4e:05:32",
        aliases=["www"],
        # A fixed host port (the driver does not publish dynamic ones yet); the
        # host is this test's own namespace, so no other test competes for it.
        port_bindings=[types_pb2.PortBinding(container_port=80, host_port=18081)],
    )
    ep = c.CreateEndpoint(pb.CreateEndpointRequest(network="manual", spec=spec), timeout=T)
    assert ep.state == pb.ENDPOINT_STATE_READY and ep.sandbox_id == "" and ep.host == "h1"
    assert ep.ipv4_address == "10.78.5.50/24" and ep.ipv6_address.startswith("fd00:78:5::")
    assert ep.mac_address == "02:42:0a:4e:05:32"

    joined = c.Join(pb.JoinRequest(endpoint_id=ep.id, sandbox="ma"), timeout=T)
    assert joined.state == pb.ENDPOINT_STATE_JOINED and joined.sandbox_id == a.id
    assert joined.interface_name and joined.gateway == "10.78.5.1"
    published = list(joined.published_ports)
    # One mapping per address family of the endpoint, as Docker publishes them.
    assert {(p.container_port, p.host_port, p.container_ip) for p in published} == {
        (80, 18081, "10.78.5.50"),
        (80, 18081, ep.ipv6_address.split("/")[0]),
    }
    inside = addresses_in(sandbox_netns(a))
    assert (
        "10.78.5.50/24" in inside
        and "fd00:78:5::" in inside
        and "02:42:0a:4e:05:32" in (netns.exec_in(sandbox_netns(a), "ip", "-o", "link").stdout)
    )
    peer = c.Connect(pb.ConnectRequest(network="manual", sandbox="mb"), timeout=T)
    assert ping_all(sandbox_netns(b), ["10.78.5.50"]) == []
    v6 = ep.ipv6_address.split("/")[0]
    res = netns.exec_in(sandbox_netns(b), "ping", "-6", "-c1", "-W2", v6, check=False)
    assert res.returncode == 0, res.stdout + res.stderr

    left = c.Leave(pb.LeaveRequest(endpoint_id=ep.id, sandbox="ma"), timeout=T)
    assert (
        left.state == pb.ENDPOINT_STATE_READY and left.sandbox_id == "" and not left.published_ports
    )
    assert "10.78.5.50" not in addresses_in(sandbox_netns(a))
    again = c.Join(pb.JoinRequest(endpoint_id=ep.id, sandbox="ma"), timeout=T)
    assert again.state == pb.ENDPOINT_STATE_JOINED

    # DeleteSandbox leaves every endpoint; an explicit endpoint stays, ready.
    c.DeleteSandbox(pb.DeleteSandboxRequest(id_or_name="ma"), timeout=T)
    kept = c.GetEndpoint(pb.GetEndpointRequest(id=ep.id), timeout=T)
    assert kept.state == pb.ENDPOINT_STATE_READY and kept.sandbox_id == ""
    # Deleting an endpoint that is joined leaves first.
    c.DeleteEndpoint(pb.DeleteEndpointRequest(id=peer.id), timeout=T)
    assert "10.78.5." not in addresses_in(sandbox_netns(b))
    c.DeleteEndpoint(pb.DeleteEndpointRequest(id=ep.id), timeout=T)
    got = c.GetNetwork(pb.GetNetworkRequest(id_or_name="manual"), timeout=T)
    assert [s.ips_in_use for s in got.subnets] == [1, 1]  # the gateways


def test_external_namespace_sandbox_and_addressless_null_network(world):
    import uuid

    from harness import kernel_snapshot

    c = world.stub()
    _net(c, "ext", "10.78.6.0/24")
    none = c.CreateNetwork(pb.CreateNetworkRequest(name="none", driver="null"), timeout=T)
    assert list(none.ipam.configs) == [] and none.driver == "null"
    own = f"cnmtest-{kernel_snapshot.TEST_TAG}-{uuid.uuid4().hex[:8]}"
    netns.create(own)
    try:
        sb = c.CreateSandbox(
            pb.CreateSandboxRequest(name="runtime", external_key=f"/run/netns/{own}"), timeout=T
        )
        assert sb.external and sb.key == f"/run/netns/{own}"
        ep = c.Connect(pb.ConnectRequest(network="ext", sandbox="runtime"), timeout=T)
        assert ep.ipv4_address.split("/")[0] in addresses_in(own)
        # A sandbox on a network cannot also be on `none` (Docker's rule)...
        with pytest.raises(grpc.RpcError) as refused:
            c.Connect(pb.ConnectRequest(network="none", sandbox="runtime"), timeout=T)
        assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "private (none) mode" in refused.value.details()
        # ...one with no other network joins it, and gets no address.
        c.CreateSandbox(pb.CreateSandboxRequest(name="quiet"), timeout=T)
        quiet = c.Connect(pb.ConnectRequest(network="none", sandbox="quiet"), timeout=T)
        assert quiet.state == pb.ENDPOINT_STATE_JOINED and quiet.ipv4_address == ""
        c.DeleteSandbox(pb.DeleteSandboxRequest(id_or_name="quiet"), timeout=T)
        c.DeleteSandbox(pb.DeleteSandboxRequest(id_or_name="runtime"), timeout=T)
        # The runtime's namespace is left to the runtime, without our interface.
        assert own in netns.run("ip", "netns", "list").stdout
        assert "10.78.6." not in addresses_in(own)
    finally:
        netns.delete(own)
