"""Remote network drivers end to end: the controller, IPAM and a driver service
using the test plugin (tests/plugins/netplugin.py), which makes real veths on
a bridge of its own in the test host's namespace. Real pings between
sandboxes; the plugin's request log checked field by field."""

from __future__ import annotations

import grpc
import pytest
from controller_env import T, addresses_in, ping_all, sandbox_netns
from remote_env import remote_world

from cnm.controller.v1 import controller_pb2 as pb
from cnm.driver.v1 import driver_pb2, driver_pb2_grpc
from cnm.types.v1 import types_pb2
from harness.netns import exec_in, run
from harness.wait import until

C = grpc.StatusCode
ACCEPT = "application/vnd.docker.plugins.v1+json"


@pytest.fixture(scope="module")
def env(redis_server, netns_prefix):
    plugins = [
        ("netplug", ["--routes"]),
        ("prefixplug", ["--dst-prefix", "web", "--mac", "02:aa:bb:cc:dd:01", "--no-gateway"]),
        ("refuseplug", ["--fail", "CreateNetwork=refused"]),
        ("failplug", ["--fail", "Join=no room at the inn"]),
        ("ghostplug", ["--src-name", "ghost0"]),
        # Killed and restarted by one test (and stopped at its end).
        ("killplug", []),
    ]
    with remote_world(redis_server, netns_prefix, plugins) as (w, started, _dir):
        yield w, started


@pytest.fixture
def c(env):
    return env[0].stub()


def _ipam(subnet: str) -> pb.IpamSpec:
    return pb.IpamSpec(configs=[types_pb2.IpamConfig(subnet=subnet)])


def _host_links(w) -> set[str]:
    out = run("ip", "-n", w.hosts["h1"].netns, "-o", "link", "show").stdout
    return {line.split(": ")[1].split("@")[0] for line in out.splitlines()}


def _cleanup(c, sandboxes: list[str], networks: list[str]) -> None:
    for name in sandboxes:
        c.DeleteSandbox(pb.DeleteSandboxRequest(id_or_name=name), timeout=T)
    for name in networks:
        c.DeleteNetwork(pb.DeleteNetworkRequest(id_or_name=name), timeout=T)


def test_handshake_used_the_plugin_protocol(env):
    _w, plugins = env
    reqs = plugins["netplug"].requests()
    assert [r["method"] for r in reqs[:2]] == ["Plugin.Activate", "NetworkDriver.GetCapabilities"]
    assert all(r["accept"] == ACCEPT for r in reqs)
    # Docker sends `null` for calls without arguments.
    assert reqs[0]["body"] is None and reqs[1]["body"] is None


def test_network_end_to_end_ping_and_exact_requests(env, c):
    w, plugins = env
    plug = plugins["netplug"]
    mark = plug.mark()
    net = c.CreateNetwork(
        pb.CreateNetworkRequest(
            name="rnet", driver="netplug", ipam=_ipam("10.91.0.0/24"), options={"color": "blue"}
        ),
        timeout=T,
    )
    assert net.scope == types_pb2.SCOPE_LOCAL and net.host == "h1"
    sbs = [c.CreateSandbox(pb.CreateSandboxRequest(name=f"r{i}"), timeout=T) for i in range(2)]
    eps = [c.Connect(pb.ConnectRequest(network="rnet", sandbox=sb.name), timeout=T) for sb in sbs]
    try:
        for ep, sb in zip(eps, sbs, strict=True):
            assert ep.state == pb.ENDPOINT_STATE_JOINED and ep.interface_name == "eth0"
            assert ep.gateway == "10.91.0.1"
            assert f"inet {ep.ipv4_address} " in addresses_in(sandbox_netns(sb))
        peer = eps[1].ipv4_address.split("/")[0]
        # Sandbox to sandbox across the plugin's bridge, and to the plugin's gateway.
        assert ping_all(sandbox_netns(sbs[0]), [peer, "10.91.0.1"]) == []
        routes = exec_in(sandbox_netns(sbs[0]), "ip", "route").stdout
        assert "default via 10.91.0.1 dev eth0" in routes
        assert "198.51.100.0/24 dev eth0" in routes  # the plugin's connected route
        assert "203.0.113.0/24 via 10.91.0.1 dev eth0" in routes  # its next-hop route

        assert plug.since(mark) == [
            "NetworkDriver.CreateNetwork",
            *["NetworkDriver.CreateEndpoint", "NetworkDriver.Join"] * 2,
        ]
        assert plug.bodies("NetworkDriver.CreateNetwork")[-1] == {
            "NetworkID": net.id,
            "Options": {
                "com.docker.network.generic": {"color": "blue"},
                "com.docker.network.enable_ipv6": False,
            },
            "IPv4Data": [
                {
                    "AddressSpace": "LocalDefault",
                    "Pool": "10.91.0.0/24",
                    "Gateway": "10.91.0.1/24",
                    "AuxAddresses": {},
                }
            ],
            "IPv6Data": None,
        }
        creates = plug.bodies("NetworkDriver.CreateEndpoint")[-2:]
        joins = plug.bodies("NetworkDriver.Join")[-2:]
        for ep, sb, create, join in zip(eps, sbs, creates, joins, strict=True):
            assert create == {
                "NetworkID": net.id,
                "EndpointID": ep.id,
                "Options": {},
                "Interface": {"Address": ep.ipv4_address, "AddressIPv6": "", "MacAddress": ""},
            }
            assert join == {
                "NetworkID": net.id,
                "EndpointID": ep.id,
                "SandboxKey": sb.key,
                "Options": {},
            }

        # EndpointOperInfo through the driver service: the plugin's Value.
        with grpc.insecure_channel(w.hosts["h1"].driver) as ch:
            info = driver_pb2_grpc.DriverStub(ch).EndpointOperInfo(
                driver_pb2.EndpointOperInfoRequest(network_id=net.id, endpoint_id=eps[0].id),
                timeout=T,
            )
        assert dict(info.value) == {"plugin": "netplugin", "endpoint": eps[0].id, "ports": "0"}

        mark = plug.mark()
        c.Disconnect(pb.DisconnectRequest(network="rnet", sandbox="r0"), timeout=T)
        assert plug.since(mark) == ["NetworkDriver.Leave", "NetworkDriver.DeleteEndpoint"]
        ref = {"NetworkID": net.id, "EndpointID": eps[0].id}
        assert plug.bodies("NetworkDriver.Leave")[-1] == ref
        assert plug.bodies("NetworkDriver.DeleteEndpoint")[-1] == ref
        assert "eth0" not in addresses_in(sandbox_netns(sbs[0]))
        # The link went back to the plugin, which deleted it.
        assert f"pc{eps[0].id[:10]}" not in _host_links(w)
        assert f"ph{eps[0].id[:10]}" not in _host_links(w)
    finally:
        _cleanup(c, ["r0", "r1"], ["rnet"])
    assert plug.methods()[-3:] == [
        "NetworkDriver.Leave",
        "NetworkDriver.DeleteEndpoint",
        "NetworkDriver.DeleteNetwork",
    ]
    assert plug.bodies("NetworkDriver.DeleteNetwork")[-1] == {"NetworkID": net.id}
    assert not {n for n in _host_links(w) if n.startswith(("pb", "ph", "pc"))}


def test_dst_prefix_and_plugin_chosen_mac(env, c):
    w, plugins = env
    c.CreateNetwork(
        pb.CreateNetworkRequest(name="pnet", driver="prefixplug", ipam=_ipam("10.92.0.0/24")),
        timeout=T,
    )
    sb = c.CreateSandbox(pb.CreateSandboxRequest(name="p0"), timeout=T)
    try:
        ep = c.Connect(pb.ConnectRequest(network="pnet", sandbox="p0"), timeout=T)
        # DstPrefix "web" + the first free index; the MAC the plugin filled in.
        assert ep.interface_name == "web0" and ep.mac_address == "02:aa:bb:cc:dd:01"
        link = exec_in(sandbox_netns(sb), "ip", "-o", "link", "show", "web0").stdout
        assert "02:aa:bb:cc:dd:01" in link and "state UP" in link
        assert f"inet {ep.ipv4_address} " in addresses_in(sandbox_netns(sb))
        # No Gateway in the plugin's answer: no default route.
        assert (
            ep.gateway == "" and "default" not in exec_in(sandbox_netns(sb), "ip", "route").stdout
        )
        create = plugins["prefixplug"].bodies("NetworkDriver.CreateEndpoint")[-1]
        assert create["Interface"]["MacAddress"] == ""
    finally:
        _cleanup(c, ["p0"], ["pnet"])


def test_ipv6_data_and_addresses(env, c):
    _w, plugins = env
    ipam = pb.IpamSpec(
        configs=[
            types_pb2.IpamConfig(subnet="10.99.0.0/24"),
            types_pb2.IpamConfig(subnet="fd99::/64"),
        ]
    )
    net = c.CreateNetwork(
        pb.CreateNetworkRequest(name="v6net", driver="netplug", ipam=ipam, enable_ipv6=True),
        timeout=T,
    )
    sbs = [c.CreateSandbox(pb.CreateSandboxRequest(name=f"v{i}"), timeout=T) for i in range(2)]
    try:
        eps = [
            c.Connect(pb.ConnectRequest(network="v6net", sandbox=f"v{i}"), timeout=T)
            for i in (0, 1)
        ]
        create = plugins["netplug"].bodies("NetworkDriver.CreateNetwork")[-1]
        assert create["Options"]["com.docker.network.enable_ipv6"] is True
        assert create["IPv6Data"] == [
            {
                "AddressSpace": "LocalDefault",
                "Pool": "fd99::/64",
                "Gateway": "fd99::1/64",
                "AuxAddresses": {},
            }
        ]
        [ep_body] = [
            b
            for b in plugins["netplug"].bodies("NetworkDriver.CreateEndpoint")
            if b["EndpointID"] == eps[1].id
        ]
        assert ep_body["Interface"]["AddressIPv6"] == eps[1].ipv6_address != ""
        assert f"inet6 {eps[1].ipv6_address} " in addresses_in(sandbox_netns(sbs[1]))
        assert ping_all(sandbox_netns(sbs[0]), [eps[1].ipv6_address.split("/")[0]]) == []
        assert net.enable_ipv6
    finally:
        _cleanup(c, ["v0", "v1"], ["v6net"])


def test_plugin_err_on_create_network_leaves_nothing(env, c):
    w, _plugins = env
    pools_before = c.ListPools(pb.ListPoolsRequest(), timeout=T).pools
    with pytest.raises(grpc.RpcError) as e:
        c.CreateNetwork(
            pb.CreateNetworkRequest(name="fnet", driver="refuseplug", ipam=_ipam("10.93.0.0/24")),
            timeout=T,
        )
    assert e.value.code() == C.FAILED_PRECONDITION
    assert "plugin 'refuseplug': NetworkDriver.CreateNetwork: refused" in e.value.details()
    assert c.ListNetworks(pb.ListNetworksRequest(), timeout=T).networks == []
    assert c.ListPools(pb.ListPoolsRequest(), timeout=T).pools == pools_before


def test_join_options_reach_the_plugin(env, c):
    w, plugins = env
    plug = plugins["netplug"]
    c.CreateNetwork(
        pb.CreateNetworkRequest(name="onet", driver="netplug", ipam=_ipam("10.95.7.0/24")),
        timeout=T,
    )
    c.CreateSandbox(pb.CreateSandboxRequest(name="o0"), timeout=T)
    try:
        ep = c.CreateEndpoint(pb.CreateEndpointRequest(network="onet"), timeout=T)
        c.Join(pb.JoinRequest(endpoint_id=ep.id, sandbox="o0", options={"k": "v"}), timeout=T)
        (body,) = plug.bodies("NetworkDriver.Join")[-1:]
        assert body["Options"] == {"k": "v"} and body["EndpointID"] == ep.id
    finally:
        _cleanup(c, ["o0"], [])
        for e in c.ListEndpoints(pb.ListEndpointsRequest(network="onet"), timeout=T).endpoints:
            c.DeleteEndpoint(pb.DeleteEndpointRequest(id=e.id), timeout=T)
        _cleanup(c, [], ["onet"])


def test_plugin_err_on_join_is_followed_by_leave_and_leaves_nothing(env, c):
    w, plugins = env
    plug = plugins["failplug"]
    c.CreateNetwork(
        pb.CreateNetworkRequest(name="jnet", driver="failplug", ipam=_ipam("10.94.0.0/24")),
        timeout=T,
    )
    c.CreateSandbox(pb.CreateSandboxRequest(name="j0"), timeout=T)
    try:
        mark = plug.mark()
        with pytest.raises(grpc.RpcError) as e:
            c.Connect(pb.ConnectRequest(network="jnet", sandbox="j0"), timeout=T)
        assert e.value.code() == C.FAILED_PRECONDITION
        assert "no room at the inn" in e.value.details()
        assert plug.since(mark) == [
            "NetworkDriver.CreateEndpoint",
            "NetworkDriver.Join",
            "NetworkDriver.Leave",
            "NetworkDriver.DeleteEndpoint",
        ]
        assert c.ListEndpoints(pb.ListEndpointsRequest(), timeout=T).endpoints == []
        net = c.GetNetwork(pb.GetNetworkRequest(id_or_name="jnet"), timeout=T)
        assert net.subnets[0].ips_in_use == 1  # the gateway only
    finally:
        _cleanup(c, ["j0"], ["jnet"])


def test_join_naming_a_link_that_does_not_exist_is_the_plugins_fault_and_undone(env, c):
    w, plugins = env
    plug = plugins["ghostplug"]
    c.CreateNetwork(
        pb.CreateNetworkRequest(name="gnet", driver="ghostplug", ipam=_ipam("10.97.0.0/24")),
        timeout=T,
    )
    sb = c.CreateSandbox(pb.CreateSandboxRequest(name="g0"), timeout=T)
    try:
        mark = plug.mark()
        with pytest.raises(grpc.RpcError) as e:
            c.Connect(pb.ConnectRequest(network="gnet", sandbox="g0"), timeout=T)
        assert e.value.code() == C.FAILED_PRECONDITION
        assert "plugin 'ghostplug': Join: invalid response: SrcName 'ghost0'" in e.value.details()
        assert plug.since(mark)[1:3] == ["NetworkDriver.Join", "NetworkDriver.Leave"]
        # The plugin's own veth was deleted by its Leave; the sandbox got nothing.
        assert not {n for n in _host_links(w) if n.startswith(("ph", "pc"))}
        assert "eth0" not in addresses_in(sandbox_netns(sb))
        assert c.ListEndpoints(pb.ListEndpointsRequest(), timeout=T).endpoints == []
    finally:
        _cleanup(c, ["g0"], ["gnet"])


def test_plugin_killed_mid_run_unavailable_nothing_half_made_then_works_again(env, c):
    w, plugins = env
    plug = plugins["killplug"]
    c.CreateNetwork(
        pb.CreateNetworkRequest(name="knet", driver="killplug", ipam=_ipam("10.96.0.0/24")),
        timeout=T,
    )
    sbs = [c.CreateSandbox(pb.CreateSandboxRequest(name=f"k{i}"), timeout=T) for i in range(2)]
    try:
        ep0 = c.Connect(pb.ConnectRequest(network="knet", sandbox="k0"), timeout=T)
        links_before = _host_links(w)
        plug.kill()

        with pytest.raises(grpc.RpcError) as e:
            c.Connect(pb.ConnectRequest(network="knet", sandbox="k1"), timeout=T)
        assert e.value.code() == C.UNAVAILABLE
        assert "plugin 'killplug'" in e.value.details() and "does not answer" in e.value.details()
        # Nothing half-made: no endpoint, the address back in the pool, no link.
        eps = c.ListEndpoints(pb.ListEndpointsRequest(network="knet"), timeout=T).endpoints
        assert [x.id for x in eps] == [ep0.id]
        net = c.GetNetwork(pb.GetNetworkRequest(id_or_name="knet"), timeout=T)
        assert net.subnets[0].ips_in_use == 2  # gateway + k0
        assert "eth0" not in addresses_in(sandbox_netns(sbs[1]))
        assert _host_links(w) == links_before
        with grpc.insecure_channel(w.hosts["h1"].driver) as ch, pytest.raises(grpc.RpcError) as e:
            driver_pb2_grpc.DriverStub(ch).EndpointOperInfo(
                driver_pb2.EndpointOperInfoRequest(network_id=net.id, endpoint_id=ep0.id),
                timeout=T,
            )
        assert e.value.code() == C.UNAVAILABLE
        # Leaving needs the plugin too: refused, to be finished once it is back.
        with pytest.raises(grpc.RpcError) as e:
            c.Disconnect(pb.DisconnectRequest(network="knet", sandbox="k0"), timeout=T)
        assert e.value.code() == C.UNAVAILABLE

        plug.start()
        # The controller's reconciler finishes the interrupted Disconnect.
        until(
            lambda: (
                not c.ListEndpoints(pb.ListEndpointsRequest(network="knet"), timeout=T).endpoints
            ),
            "k0's endpoint gone",
            timeout=10,
        )
        assert f"ph{ep0.id[:10]}" not in _host_links(w) and f"pc{ep0.id[:10]}" not in _host_links(w)
        eps = [
            c.Connect(pb.ConnectRequest(network="knet", sandbox=f"k{i}"), timeout=T) for i in (0, 1)
        ]
        assert ping_all(sandbox_netns(sbs[1]), [eps[0].ipv4_address.split("/")[0]]) == []
    finally:
        if plug.proc.poll() is not None:
            plug.start()
        _cleanup(c, ["k0", "k1"], ["knet"])
        # Started by this test, so stopped by it (the leftover guard checks).
        w.spawn.stop(plug.proc)
    assert not {n for n in _host_links(w) if n.startswith(("pb", "ph", "pc"))}
