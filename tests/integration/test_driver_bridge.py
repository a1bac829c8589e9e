"""Bridge driver end to end: a real cnm-driver in a namespace host, real sandboxes, real pings."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
from driver_world import (
    T,
    default_routes,
    hosts_text,
    links,
    netns_name,
    network_request,
    ping,
    shared_host,
)

from cnm.driver.v1 import driver_pb2 as pb
from services.ids import new_id


@pytest.fixture(scope="module")
def world(redis_server, netns_prefix):
    with shared_host(redis_server, netns_prefix) as h:
        yield h


LEGACY_HOSTS = {"cnm.network.legacy_hosts": "true"}


@pytest.fixture
def host(world):
    """The module's driver; everything a test made through it is deleted after the test."""
    yield world
    world.reset_or_recover()


def test_two_sandboxes_on_one_bridge_ping_both_ways_ipv4_and_ipv6(host):
    nid = host.network("10.20.0.0/24", subnet6="fd00:20::/64", name="front")
    a, _ = host.attach(nid, "10.20.0.2/24", "alpha", address6="fd00:20::2/64")
    b, _ = host.attach(nid, "10.20.0.3/24", "beta", address6="fd00:20::3/64")

    assert ping(a, "10.20.0.3") and ping(b, "10.20.0.2")
    assert ping(a, "fd00:20::3") and ping(b, "fd00:20::2")

    # Peers are found through the embedded resolver: hosts files keep their own entries.
    hosts_a = Path(a.hosts_path).read_text()
    assert hosts_a.splitlines()[1] == "10.20.0.2\talpha" and "beta" not in hosts_a
    assert "alpha" not in Path(b.hosts_path).read_text()
    assert "eth0" in links(netns_name(a))
    assert len(default_routes(a)) == 1


def test_sandbox_on_two_networks_has_eth0_eth1_one_default_route_and_leave_cleans_up(host):
    # Legacy hosts files: every peer written into every sandbox's file.
    front = host.network("10.21.0.0/24", name="front", options=LEGACY_HOSTS)
    back = host.network("10.22.0.0/24", name="back", options=LEGACY_HOSTS)
    sb = host.sandbox("app")
    ep_front = host.endpoint(front, "10.21.0.2/24", name="app")
    ep_back = host.endpoint(back, "10.22.0.2/24", name="app")
    first = host.join(front, ep_front, sb.sandbox_id)
    second = host.join(back, ep_back, sb.sandbox_id)
    web, _ = host.attach(front, "10.21.0.3/24", "web")
    db, _ = host.attach(back, "10.22.0.3/24", "db")

    assert (first.interface_name, first.gateway) == ("eth0", "10.21.0.1")
    # The default route belongs to the first network joined; the second reports none.
    assert (second.interface_name, second.gateway) == ("eth1", "")
    ns = netns_name(sb)
    assert {"eth0", "eth1"} <= set(links(ns))
    assert default_routes(sb) == ["default via 10.21.0.1 dev eth0 proto static "]
    hosts_text(sb, has=("10.21.0.3\tweb web.front", "10.22.0.3\tdb db.back"))
    assert ping(sb, "10.21.0.3") and ping(sb, "10.22.0.3")

    host.leave(front, ep_front, sb.sandbox_id)

    assert "eth0" not in links(ns) and "eth1" in links(ns)
    hosts = Path(sb.hosts_path).read_text()  # the leaving sandbox's own file: current at once
    assert "web" not in hosts and "10.22.0.3\tdb db.back" in hosts
    hosts_text(web, lacks=("app",))
    # The default route moved to the remaining network: still exactly one.
    assert default_routes(sb) == ["default via 10.22.0.1 dev eth1 proto static "]
    assert ping(sb, "10.22.0.3")
    # Isolation: with its interface on "front" gone, the sandbox cannot reach it through "back".
    assert not ping(sb, "10.21.0.3", wait=0.3)
    # A new join takes the free name eth0 again.
    again = host.join(front, ep_front, sb.sandbox_id)
    assert again.interface_name == "eth0" and again.gateway == ""


def test_internal_network_gives_no_default_route(host):
    nid = host.network("10.23.0.0/24", internal=True, name="private")
    sb = host.sandbox("lonely")
    eid = host.endpoint(nid, "10.23.0.2/24")
    res = host.join(nid, eid, sb.sandbox_id)
    assert res.gateway == "" and res.interface_name == "eth0"
    assert default_routes(sb) == [] and default_routes(sb, "-6") == []


def test_mac_is_derived_from_ipv4_and_mtu_option_applies(host):
    nid = host.network("172.17.0.0/16", options={"com.docker.network.driver.mtu": "1400"})
    sb = host.sandbox("c1")
    eid = host.endpoint(nid, "172.17.0.2/16")
    res = host.join(nid, eid, sb.sandbox_id)
    assert res.mac_address == "02:42:ac:11:00:02"
    view = host.stub.GetSandbox(pb.GetSandboxRequest(sandbox_id=sb.sandbox_id), timeout=T)
    eth0 = next(i for i in view.interfaces if i.name == "eth0")
    assert (eth0.mac_address, eth0.mtu, eth0.up) == ("02:42:ac:11:00:02", 1400, True)
    assert "172.17.0.2/16" in eth0.addresses
    assert any(r.destination == "0.0.0.0/0" and r.gateway == "172.17.0.1" for r in view.routes)
    bridge = f"br-{nid[:12]}"
    assert "mtu 1400" in host.host_exec("ip", "link", "show", bridge).stdout


def test_default_mtu_without_default_route_in_host_is_1500(host):
    nid = host.network("10.24.0.0/24")
    out = host.host_exec("ip", "link", "show", f"br-{nid[:12]}").stdout
    assert "mtu 1500" in out


def test_deleting_network_removes_its_bridge_and_records(host):
    nid = host.network("10.25.0.0/24", options={"com.docker.network.bridge.name": "cnmtest0"})
    assert "cnmtest0" in links(host.host_ns)
    host.stub.DeleteNetwork(pb.DeleteNetworkRequest(network_id=nid), timeout=T)
    assert "cnmtest0" not in links(host.host_ns)
    # Repeating the delete is success (idempotent).
    host.stub.DeleteNetwork(pb.DeleteNetworkRequest(network_id=nid), timeout=T)


def test_delete_network_with_joined_endpoint_is_failed_precondition(host):
    nid = host.network("10.26.0.0/24")
    host.attach(nid, "10.26.0.2/24", "busy")
    with pytest.raises(grpc.RpcError) as err:
        host.stub.DeleteNetwork(pb.DeleteNetworkRequest(network_id=nid), timeout=T)
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert nid in err.value.details()
    assert f"br-{nid[:12]}" in links(host.host_ns)


def test_every_call_is_safe_to_repeat(host):
    req = network_request(new_id(), "10.27.0.0/24")
    host.made_networks.append(req.network_id)
    host.stub.CreateNetwork(req, timeout=T)
    host.stub.CreateNetwork(req, timeout=T)
    sb_req = pb.CreateSandboxRequest(sandbox_id=new_id(), name="again", hostname="again")
    sb1 = host.stub.CreateSandbox(sb_req, timeout=T)
    sb2 = host.stub.CreateSandbox(sb_req, timeout=T)
    assert sb1 == sb2
    ep_req = pb.CreateEndpointRequest(
        network_id=req.network_id,
        endpoint_id=new_id(),
        interface=pb.EndpointInterface(address="10.27.0.2/24"),
    )
    assert host.stub.CreateEndpoint(ep_req, timeout=T) == host.stub.CreateEndpoint(
        ep_req, timeout=T
    )
    j1 = host.join(req.network_id, ep_req.endpoint_id, sb1.sandbox_id)
    j2 = host.join(req.network_id, ep_req.endpoint_id, sb1.sandbox_id)
    assert j1 == j2 and links(netns_name(sb1)).count("eth0") == 1
    host.leave(req.network_id, ep_req.endpoint_id, sb1.sandbox_id)
    host.leave(req.network_id, ep_req.endpoint_id, sb1.sandbox_id)
    assert "eth0" not in links(netns_name(sb1))
    del_ep = pb.DeleteEndpointRequest(network_id=req.network_id, endpoint_id=ep_req.endpoint_id)
    host.stub.DeleteEndpoint(del_ep, timeout=T)
    host.stub.DeleteEndpoint(del_ep, timeout=T)
    host.stub.DeleteSandbox(pb.DeleteSandboxRequest(sandbox_id=sb1.sandbox_id), timeout=T)
    host.stub.DeleteSandbox(pb.DeleteSandboxRequest(sandbox_id=sb1.sandbox_id), timeout=T)
    assert not Path(sb1.key).exists() and not Path(sb1.hosts_path).exists()
    # Same id, different parameters: a clear ALREADY_EXISTS, not a silent overwrite.
    with pytest.raises(grpc.RpcError) as err:
        host.stub.CreateNetwork(network_request(req.network_id, "10.28.0.0/24"), timeout=T)
    assert err.value.code() == grpc.StatusCode.ALREADY_EXISTS


def test_full_bridge_is_resource_exhausted_and_leaves_nothing(host, tmp_path):
    nid = host.network("10.29.0.0/22", options={"com.docker.network.bridge.name": "cnmfull0"})
    # The kernel's limit is 1023 ports per bridge (port numbers 1..1023): fill it.
    batch = tmp_path / "ports.batch"
    batch.write_text(
        "".join(
            f"link add fp{i} group 77 master cnmfull0 type veth peer name fq{i} group 77\n"
            for i in range(1023)
        )
    )
    host.host_exec("ip", "-batch", str(batch))
    try:
        sb = host.sandbox("late")
        eid = host.endpoint(nid, "10.29.0.2/22")
        with pytest.raises(grpc.RpcError) as err:
            host.join(nid, eid, sb.sandbox_id)
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "cnmfull0" in err.value.details() and "full" in err.value.details()
        assert links(netns_name(sb)) == ["lo"]
        assert f"veth{eid[:11]}" not in links(host.host_ns)
    finally:
        host.host_exec("ip", "link", "delete", "group", "77")
    assert host.join(nid, eid, sb.sandbox_id).interface_name == "eth0"


def test_join_with_create_connects_in_one_call_and_delete_endpoint_disconnects(host):
    nid = host.network("10.31.0.0/24", name="one")
    peer, _ = host.attach(nid, "10.31.0.3/24", "peer")
    sb = host.sandbox("solo")
    eid = new_id()
    host.made_endpoints.append((nid, eid))
    create = pb.CreateEndpointRequest(
        network_id=nid, endpoint_id=eid, interface=pb.EndpointInterface(address="10.31.0.2/24")
    )
    req = pb.JoinRequest(network_id=nid, endpoint_id=eid, sandbox_id=sb.sandbox_id, create=create)
    first = host.stub.Join(req, timeout=T)
    assert (first.interface_name, first.gateway) == ("eth0", "10.31.0.1")
    assert first.mac_address == "02:42:0a:1f:00:02"  # derived from the address, as CreateEndpoint
    assert host.stub.Join(req, timeout=T) == first  # a repeat is the same connection
    assert ping(sb, "10.31.0.3") and ping(peer, "10.31.0.2")

    # DeleteEndpoint alone disconnects: the interface goes, the record goes.
    del_ep = pb.DeleteEndpointRequest(network_id=nid, endpoint_id=eid)
    host.stub.DeleteEndpoint(del_ep, timeout=T)
    assert "eth0" not in links(netns_name(sb))
    assert eid not in host.records()["endpoints"]


def test_join_with_create_that_fails_leaves_no_endpoint(host):
    nid = host.network("10.32.0.0/24", name="two")
    sb = host.sandbox("solo")
    before = host.records()
    eid = new_id()
    create = pb.CreateEndpointRequest(
        network_id=nid, endpoint_id=eid, interface=pb.EndpointInterface(address="10.32.0.2/24")
    )
    # The create half is fine; the join half names a sandbox this host does not have.
    missing = pb.JoinRequest(network_id=nid, endpoint_id=eid, sandbox_id=new_id(), create=create)
    with pytest.raises(grpc.RpcError) as err:
        host.stub.Join(missing, timeout=T)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    # A create naming another endpoint than the join: refused before anything is made.
    other = pb.JoinRequest(
        network_id=nid, endpoint_id=new_id(), sandbox_id=sb.sandbox_id, create=create
    )
    with pytest.raises(grpc.RpcError) as err:
        host.stub.Join(other, timeout=T)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "create.endpoint_id" in err.value.details()
    assert host.records() == before
    assert "eth0" not in links(netns_name(sb))
