"""The bridge driver's firewall, with real packets: ICC, isolation between bridges,
masquerade, internal networks, published ports, self-healing after `nft flush ruleset`,
and cnm's tables going away with the last network.

The "outside world" is ports_world's namespace, wired to the test host by a veth
(192.0.2.1 on the host side, 192.0.2.2 outside) and with NO route back to any
sandbox subnet: a sandbox reaches it only when its traffic is masqueraded.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest
from driver_world import T, default_routes, netns_name, ping
from ports_world import HOST as HOST_UPLINK
from ports_world import OUTSIDE, ports_world

from cnm.driver.v1 import driver_pb2 as pb
from cnm.types.v1 import types_pb2 as tpb
from harness import netns
from harness.wait import eventually


@pytest.fixture(scope="module")
def world(redis_server, netns_prefix):
    with ports_world(redis_server, netns_prefix) as w:
        yield w


@pytest.fixture
def host(world):
    h, _ = world
    yield h
    h.reset_or_recover()


@pytest.fixture
def ext(world):
    return world[1]


def tables(host) -> str:
    return host.host_exec("nft", "list", "tables").stdout


def test_default_mtu_is_the_mtu_of_the_default_route_interface(host):
    host.host_exec("ip", "link", "set", "uplink", "mtu", "1400")
    host.host_exec("ip", "route", "add", "default", "via", OUTSIDE)
    try:
        nid = host.network("10.49.0.0/24")
        sb, _ = host.attach(nid, "10.49.0.2/24", "small")
        assert "mtu 1400" in host.host_exec("ip", "link", "show", f"br-{nid[:12]}").stdout
        assert "mtu 1400" in netns.exec_in(netns_name(sb), "ip", "link", "show", "eth0").stdout
    finally:
        host.host_exec("ip", "route", "del", "default", check=False)
        host.host_exec("ip", "link", "set", "uplink", "mtu", "1500")


def test_icc_off_blocks_sandboxes_of_one_bridge_but_not_the_gateway(host):
    nid = host.network("10.50.0.0/24", options={"com.docker.network.bridge.enable_icc": "false"})
    a, _ = host.attach(nid, "10.50.0.2/24", "a")
    b, _ = host.attach(nid, "10.50.0.3/24", "b")
    assert not ping(a, "10.50.0.3", wait=0.5) and not ping(b, "10.50.0.2", wait=0.5)
    assert ping(a, "10.50.0.1")
    # The same layout with ICC on (the default) talks.
    nid2 = host.network("10.51.0.0/24")
    c, _ = host.attach(nid2, "10.51.0.2/24", "c")
    d, _ = host.attach(nid2, "10.51.0.3/24", "d")
    assert ping(c, "10.51.0.3") and ping(d, "10.51.0.2")


def test_two_bridge_networks_are_isolated(host):
    n1 = host.network("10.52.0.0/24", name="blue")
    n2 = host.network("10.53.0.0/24", name="green")
    a, _ = host.attach(n1, "10.52.0.2/24", "a")
    b, _ = host.attach(n2, "10.53.0.2/24", "b")
    assert default_routes(a) and default_routes(b)
    assert not ping(a, "10.53.0.2", wait=0.5) and not ping(b, "10.52.0.2", wait=0.5)
    assert ping(a, "10.52.0.1") and ping(b, "10.53.0.1")


def test_masquerade_lets_a_sandbox_reach_the_outside(host, ext):
    nid = host.network("10.54.0.0/24")
    a, _ = host.attach(nid, "10.54.0.2/24", "a")
    assert ping(a, OUTSIDE)
    # Without masquerade the outside cannot answer: it has no route to 10.54.0.0/24.
    off = host.network(
        "10.55.0.0/24", options={"com.docker.network.bridge.enable_ip_masquerade": "false"}
    )
    b, _ = host.attach(off, "10.55.0.2/24", "b")
    assert default_routes(b) and not ping(b, OUTSIDE, wait=0.5)


def test_internal_network_has_no_way_out_even_with_a_route(host, ext):
    nid = host.network("10.56.0.0/24", internal=True)
    a, _ = host.attach(nid, "10.56.0.2/24", "a")
    assert default_routes(a) == []
    netns.exec_in(netns_name(a), "ip", "route", "add", "default", "via", "10.56.0.1")
    assert not ping(a, OUTSIDE, wait=0.5)


def test_flushed_ruleset_comes_back_by_itself_and_traffic_flows_again(host, ext):
    nid = host.network("10.57.0.0/24", options={"com.docker.network.bridge.enable_icc": "false"})
    a, _ = host.attach(nid, "10.57.0.2/24", "a")
    b, _ = host.attach(nid, "10.57.0.3/24", "b")
    assert ping(a, OUTSIDE) and not ping(a, "10.57.0.3", wait=0.3)

    host.host_exec("nft", "flush", "ruleset")
    flushed = time.monotonic()
    assert "cnm" not in tables(host)

    assert eventually(lambda: "table inet cnm" in tables(host), timeout=10)
    restored = time.monotonic() - flushed
    assert eventually(lambda: ping(a, OUTSIDE, wait=0.3), timeout=5)
    assert not ping(a, "10.57.0.3", wait=0.3)
    assert restored < 5, f"rules came back after {restored:.1f}s"


def test_deleting_networks_removes_their_rules_and_the_last_one_the_tables(host):
    n1 = host.network("10.58.0.0/24")
    n2 = host.network("10.59.0.0/24")
    assert "table inet cnm" in tables(host) and "table bridge cnm" in tables(host)
    host.stub.DeleteNetwork(pb.DeleteNetworkRequest(network_id=n1), timeout=T)
    ruleset = host.host_exec("nft", "list", "table", "inet", "cnm").stdout
    assert "10.58.0.0/24" not in ruleset and "10.59.0.0/24" in ruleset
    assert f"br-{n1[:12]}" not in ruleset
    host.stub.DeleteNetwork(pb.DeleteNetworkRequest(network_id=n2), timeout=T)
    assert "cnm" not in tables(host)
    host.made_networks.clear()


SERVER = """
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 80)); s.listen(4); print("ready", flush=True)
while True:
    c, peer = s.accept(); c.sendall(b"hello from the sandbox\\n"); c.close()
"""

CLIENT = """
import socket, sys
c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3)
print(c.recv(100).decode().strip())
"""


def test_fixed_host_port_is_published_on_join_and_released_on_leave(host, ext, spawn):
    nid = host.network("10.60.0.0/24")
    sb = host.sandbox("web")
    binding = tpb.PortBinding(protocol=tpb.PROTOCOL_TCP, host_port=8080, container_port=80)
    eid = host.endpoint(nid, "10.60.0.2/24", name="web", port_bindings=[binding])
    res = host.join(nid, eid, sb.sandbox_id)
    assert [
        (p.host_ip, p.host_port, p.container_ip, p.container_port) for p in res.port_bindings
    ] == [("0.0.0.0", 8080, "10.60.0.2", 80)]
    info = host.stub.EndpointOperInfo(
        pb.EndpointOperInfoRequest(network_id=nid, endpoint_id=eid), timeout=T
    )
    assert list(info.port_bindings) == list(res.port_bindings)
    server = spawn(
        [sys.executable, "-c", SERVER], netns_name=netns_name(sb), stdout=subprocess.PIPE, text=True
    )
    try:
        assert server.stdout.readline().strip() == "ready"
        out = netns.exec_in(ext, sys.executable, "-c", CLIENT, HOST_UPLINK, "8080")
        assert out.stdout.strip() == "hello from the sandbox"
        host.leave(nid, eid, sb.sandbox_id)
        gone = netns.exec_in(ext, sys.executable, "-c", CLIENT, HOST_UPLINK, "8080", check=False)
        assert gone.returncode != 0
    finally:
        spawn.stop(server, signal.SIGKILL)


def test_leave_flushes_conntrack_entries_of_the_endpoint_address(host, ext):
    nid = host.network("10.65.0.0/24")
    sb, eid = host.attach(nid, "10.65.0.2/24", "chatty")
    send = (
        "import socket; socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b'x', ('%s', 5353))"
    )
    netns.exec_in(netns_name(sb), sys.executable, "-c", send % OUTSIDE)

    def flows() -> str:
        return host.host_exec("conntrack", "-L", "-s", "10.65.0.2", check=False).stdout

    assert eventually(lambda: "dport=5353" in flows(), timeout=5)
    host.leave(nid, eid, sb.sandbox_id)
    assert eventually(lambda: "dport=5353" not in flows(), timeout=5)
