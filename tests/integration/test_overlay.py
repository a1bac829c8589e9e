"""Overlay networks on a simulated 3-host cluster (harness.world.cluster).

Every host is a namespace running its own cnm-driver with --advertise-addr on
an underlay bridge; packets between sandboxes of different hosts really are
VXLAN-encapsulated UDP crossing that bridge. What is checked: all pairs
reach each other with MTU 1450; two overlays cannot reach each other even on
one host; a leave withdraws the peer's static FDB and neighbour entries on
the other hosts within a second; a restarted driver rebuilds lost overlay
state; a host that stops heartbeating has its peers withdrawn after its ttl
and shows as unreachable.
"""

from __future__ import annotations

import ipaddress
import signal
import subprocess
import time

import pytest
import redis
from controller_env import T, ping_all

from cnm.controller.v1 import controller_pb2 as pb
from cnm.types.v1 import types_pb2 as tpb
from driver_service import osl
from driver_service.drivers.overlay import options as ov
from harness import kernel_snapshot, netns, world
from harness.stack import BIN
from harness.wait import until
from harness.world import World

VNI_KEY = "com.docker.network.driver.overlay.vxlanid_list"
# Heartbeats fast enough that a silent host is noticed within seconds; the ttl
# leaves live hosts room for a stall on a loaded machine.
HEARTBEAT, TTL = 0.5, 3.0
FAST = {"CNM_HEARTBEAT_INTERVAL": str(HEARTBEAT), "CNM_HOST_TTL": str(TTL)}


@pytest.fixture
def make_cluster(spawn, redis_url, netns_prefix):
    made: list[World] = []

    def make(**kw) -> World:
        name = f"cnmc-{kernel_snapshot.TEST_TAG}-{len(made)}"
        made.append(world.cluster(spawn, redis_url, name=name, netns_prefix=netns_prefix, **kw))
        return made[-1]

    yield make
    errors = []
    for w in made:
        try:
            w.close()
        except RuntimeError as e:
            errors.append(str(e))
    assert not errors, errors


# ---------------------------------------------------------------------- helpers


def overlay(c, name: str, **kw) -> pb.Network:
    return c.CreateNetwork(pb.CreateNetworkRequest(name=name, driver="overlay", **kw), timeout=T)


def attach(c, net: str, name: str, host: str) -> tuple[pb.Sandbox, pb.Endpoint]:
    sb = c.CreateSandbox(pb.CreateSandboxRequest(name=name, host=host), timeout=T)
    ep = c.Connect(pb.ConnectRequest(network=net, sandbox=sb.id), timeout=T)
    return sb, ep


def ns_of(sb: pb.Sandbox) -> str:
    return sb.key.rsplit("/", 1)[1]


def ip_of(ep: pb.Endpoint) -> str:
    return ep.ipv4_address.split("/")[0]


def ov_netns(cluster: World, host: str, net_id: str) -> str:
    return ov.netns_name(cluster.netns_prefix, host, net_id)


def entries(cluster: World, host: str, net_id: str) -> tuple[set, set]:
    """(FDB {(mac, vtep)}, neighbours {(ip, mac)}) of a host's VXLAN device; empty
    when the overlay is not built there."""
    ns = ov_netns(cluster, host, net_id)
    if not osl.namespace_exists(ns):
        return set(), set()
    fdb = {(e.mac, str(e.dst)) for e in osl.list_fdb("vxlan0", netns=ns) if e.dst is not None}
    neigh = {
        (str(n.ip), n.mac)
        for n in osl.list_neighbours(netns=ns, ifname="vxlan0")
        if "permanent" in n.state
    }
    return fdb, neigh


def expected_entries(cluster: World, host: str, placed: dict) -> tuple[set, set]:
    """What `host` must carry: every endpoint placed on another host."""
    fdb, neigh = set(), set()
    for ep, where, _ns in placed.values():
        if where != host:
            fdb.add((ep.mac_address, cluster.hosts[where].address))
            neigh.add((ip_of(ep), ep.mac_address))
            if ep.ipv6_address:
                neigh.add((ep.ipv6_address.split("/")[0], ep.mac_address))
    return fdb, neigh


def wait_converged(cluster: World, net_id: str, placed: dict, timeout: float = 1.0) -> float:
    """Wait until every host carries exactly the entries for `placed`; returns the
    seconds it took. Joins are announced asynchronously (pub/sub): a peer that just
    joined may be unknown elsewhere for a few milliseconds."""
    t0 = time.monotonic()
    until(
        lambda: all(
            entries(cluster, h, net_id) == expected_entries(cluster, h, placed)
            for h in cluster.hosts
            if any(where == h for _ep, where, _ns in placed.values())
        ),
        "peer entries converged on every host",
        timeout=timeout,
        interval=0.01,
    )
    return time.monotonic() - t0


def unreachable_pairs(placed: dict) -> list[str]:
    """Every unordered pair pinged once (from the first of the pair); the failures."""
    names = sorted(placed)
    failed = []
    for i, src in enumerate(names):
        targets = {ip_of(placed[dst][0]): dst for dst in names[i + 1 :]}
        if not targets:
            continue
        sb_ns = placed[src][2]
        for addr in ping_all(sb_ns, list(targets)):
            failed.append(f"{src}->{targets[addr]}")
    return failed


def place(c, net: pb.Network, layout: dict[str, str]) -> dict:
    """name -> (endpoint, host, sandbox namespace) for sandboxes made per `layout`."""
    placed = {}
    for name, host in layout.items():
        sb, ep = attach(c, net.id, name, host)
        placed[name] = (ep, host, ns_of(sb))
    return placed


# ---------------------------------------------------------------------- tests


def test_one_overlay_on_three_hosts_all_pairs_ping_mtu_1450_and_a_leave_is_withdrawn_fast(
    make_cluster,
):
    cluster = make_cluster(hosts=3)
    c = cluster.stub()
    net = overlay(c, "ov")
    assert net.scope == tpb.SCOPE_GLOBAL and net.host == ""
    vni = int(net.options[VNI_KEY])
    assert 256 <= vni < 2**24
    pools = [p for p in c.ListPools(pb.ListPoolsRequest(), timeout=T).pools if p.owner == net.id]
    assert [p.address_space for p in pools] == ["GlobalDefault"]
    subnet = pools[0].pool

    layout = {f"s{h}{k}": f"h{h}" for h in (1, 2, 3) for k in (1, 2)}
    placed = place(c, net, layout)

    addresses = [ip_of(ep) for ep, _h, _n in placed.values()]
    assert len(set(addresses)) == 6, "addresses are unique across hosts"
    assert all(ipaddress.ip_address(a) in ipaddress.ip_network(subnet) for a in addresses)
    # A network name means the same network everywhere: one id, one VNI on every host.
    for host_id, host in cluster.hosts.items():
        vx = osl.get_link("vxlan0", netns=ov_netns(cluster, host_id, net.id))
        assert vx.mtu == 1450 and vx.vxlan is not None
        assert (vx.vxlan.vni, vx.vxlan.port, vx.vxlan.local) == (vni, 4789, host.address)
        assert not vx.vxlan.learning and vx.vxlan.proxy
    for _ep, _h, sb_ns in placed.values():
        assert osl.get_link("eth0", netns=sb_ns).mtu == 1450

    wait_converged(cluster, net.id, placed)
    assert unreachable_pairs(placed) == []
    # A packet of the full 1450 bytes crosses hosts unfragmented (DF set).
    big = netns.exec_in(
        placed["s11"][2], "ping", "-c1", "-W2", "-M", "do", "-s", "1422",
        ip_of(placed["s31"][0]), check=False,
    )  # fmt: skip
    assert big.returncode == 0, big.stdout + big.stderr

    # Static entries only for the remote peers: nothing to flood to (no all-zero MAC).
    for host_id in cluster.hosts:
        assert entries(cluster, host_id, net.id) == expected_entries(cluster, host_id, placed)

    # Leave on h1: the peer disappears from h2 and h3 within a second.
    leaving_ep = placed["s11"][0]
    gone = (leaving_ep.mac_address, cluster.hosts["h1"].address)
    t0 = time.monotonic()
    c.Disconnect(pb.DisconnectRequest(network=net.id, sandbox="s11"), timeout=T)

    def withdrawn() -> bool:
        for host_id in ("h2", "h3"):
            fdb, neigh = entries(cluster, host_id, net.id)
            if gone in fdb or (ip_of(leaving_ep), leaving_ep.mac_address) in neigh:
                return False
        return True

    until(withdrawn, "peer withdrawn on h2 and h3", timeout=1.0, interval=0.01)
    elapsed = time.monotonic() - t0
    print(f"leave -> entries gone on the other hosts: {elapsed * 1000:.0f} ms")
    del placed["s11"]
    for host_id in cluster.hosts:
        assert entries(cluster, host_id, net.id) == expected_entries(cluster, host_id, placed)
    assert unreachable_pairs(placed) == []

    # The last local endpoint takes the overlay's namespace (bridge, VXLAN) with it.
    c.Disconnect(pb.DisconnectRequest(network=net.id, sandbox="s12"), timeout=T)
    assert not osl.namespace_exists(ov_netns(cluster, "h1", net.id))
    del placed["s12"]
    until(
        lambda: all(
            entries(cluster, h, net.id) == expected_entries(cluster, h, placed)
            for h in ("h2", "h3")
        ),
        "h1's last peer withdrawn",
        timeout=1.0,
        interval=0.01,
    )


def _force_route(sb_ns: str, target: pb.Endpoint) -> None:
    """Make a sandbox try hard to reach `target` at L2: an on-link route to its
    address and a permanent neighbour entry with its MAC (no ARP needed)."""
    addr = ip_of(target)
    netns.exec_in(sb_ns, "ip", "route", "replace", f"{addr}/32", "dev", "eth0")
    netns.exec_in(
        sb_ns, "ip", "neigh", "replace", addr, "lladdr", target.mac_address,
        "dev", "eth0", "nud", "permanent",
    )  # fmt: skip


def test_two_overlays_cannot_reach_each_other_even_on_the_same_host(make_cluster):
    cluster = make_cluster(hosts=2)
    c = cluster.stub()
    # Blue on its own VXLAN UDP port (a per-network option).
    red, blue = (
        overlay(c, "red"),
        overlay(c, "blue", options={"com.cnm.overlay.vxlan_port": "4790"}),
    )
    assert red.options[VNI_KEY] != blue.options[VNI_KEY]
    reds = place(c, red, {"r1": "h1", "r2": "h2"})
    blues = place(c, blue, {"b1": "h1", "b2": "h2"})
    wait_converged(cluster, red.id, reds)
    wait_converged(cluster, blue.id, blues)
    assert unreachable_pairs(reds) == [] and unreachable_pairs(blues) == []
    # Each overlay has its own namespace (bridge + VXLAN) on a host.
    assert ov_netns(cluster, "h1", red.id) != ov_netns(cluster, "h1", blue.id)
    for net, port in ((red, 4789), (blue, 4790)):
        vx = osl.get_link("vxlan0", netns=ov_netns(cluster, "h1", net.id))
        assert vx.vxlan is not None and vx.vxlan.port == port

    # r1 is told exactly where b1 (same host) and b2 (other host) are, at L2.
    r1_ns = reds["r1"][2]
    for name in ("b1", "b2"):
        _force_route(r1_ns, blues[name][0])
    b1_ns = blues["b1"][2]
    _force_route(b1_ns, reds["r1"][0])
    _force_route(b1_ns, reds["r2"][0])
    assert sorted(ping_all(r1_ns, [ip_of(blues["b1"][0]), ip_of(blues["b2"][0])])) == sorted(
        [ip_of(blues["b1"][0]), ip_of(blues["b2"][0])]
    )
    assert sorted(ping_all(b1_ns, [ip_of(reds["r1"][0]), ip_of(reds["r2"][0])])) == sorted(
        [ip_of(reds["r1"][0]), ip_of(reds["r2"][0])]
    )
    # And the other overlay's peers are not in this one's tables at all.
    fdb, neigh = entries(cluster, "h1", red.id)
    assert {mac for mac, _ in fdb} == {reds["r2"][0].mac_address}
    assert {ip for ip, _ in neigh} == {ip_of(reds["r2"][0])}
    # Its own traffic is unaffected.
    assert unreachable_pairs(reds) == [] and unreachable_pairs(blues) == []


def ping6(placed: dict, src: str, dst: str) -> bool:
    addr = placed[dst][0].ipv6_address.split("/")[0]
    res = netns.exec_in(placed[src][2], "ping", "-6", "-c1", "-W2", addr, check=False)
    return res.returncode == 0


def test_restarted_driver_rebuilds_lost_overlay_state_and_traffic_flows_again(make_cluster):
    cluster = make_cluster(hosts=3)
    c = cluster.stub()
    # Dual stack: IPv6 neighbours are proxied by the VXLAN device as IPv4's are.
    net = overlay(c, "ov", enable_ipv6=True)
    placed = place(c, net, {"a": "h1", "b1": "h2", "b2": "h2", "c": "h3"})
    assert all(ep.ipv6_address for ep, _h, _n in placed.values())
    wait_converged(cluster, net.id, placed)
    assert unreachable_pairs(placed) == []
    assert ping6(placed, "a", "c") and ping6(placed, "b1", "a")

    # The data plane does not need the driver service: stopped, traffic still flows.
    cluster.stop_host("h2")
    assert unreachable_pairs(placed) == []
    cluster.start_host("h2")
    assert unreachable_pairs(placed) == []

    # A crash that also loses h2's overlay state (namespace, bridge, VXLAN device, veths).
    cluster.stop_host("h2", signal.SIGKILL)
    h2_ns = ov_netns(cluster, "h2", net.id)
    osl.delete_namespace(h2_ns)
    until(
        lambda: not osl.link_exists("eth0", netns=placed["b1"][2]),
        "h2's sandboxes lose eth0 with the overlay namespace",
        timeout=5,
    )
    assert set(ping_all(placed["a"][2], [ip_of(placed["b1"][0])])) == {ip_of(placed["b1"][0])}

    cluster.start_host("h2")
    assert osl.namespace_exists(h2_ns)
    for name in ("b1", "b2"):
        eth0 = osl.get_link("eth0", netns=placed[name][2])
        assert eth0.mtu == 1450 and eth0.mac == placed[name][0].mac_address
        addrs = {str(a.address) for a in osl.list_addresses(netns=placed[name][2], ifname="eth0")}
        assert placed[name][0].ipv4_address in addrs
    assert entries(cluster, "h2", net.id) == expected_entries(cluster, "h2", placed)
    until(lambda: unreachable_pairs(placed) == [], "all pairs ping again", timeout=5)
    assert ping6(placed, "b2", "c")

    # `cnm-driver --cleanup` on a dead h2 removes its overlay namespace and its peers,
    # and the other hosts withdraw them at once.
    cluster.stop_host("h2", signal.SIGKILL)
    res = cluster.cleanup_host("h2")
    assert res.returncode == 0, res.stderr
    assert not osl.namespace_exists(h2_ns)
    gone = {name: placed.pop(name) for name in ("b1", "b2")}
    wait_converged(cluster, net.id, placed)
    client = redis.Redis.from_url(cluster.redis_url, decode_responses=True)
    try:
        peers = client.hgetall(f"cnm:overlay:{net.id}:peers")
    finally:
        client.close()
    assert set(peers) == {placed["a"][0].id, placed["c"][0].id}
    # Back for the API clean-up (which finds nothing left on h2 and succeeds).
    cluster.start_host("h2")
    placed.update(gone)


def test_dead_host_peers_are_withdrawn_after_its_ttl_and_it_shows_unreachable(make_cluster):
    cluster = make_cluster(hosts=3, driver_env={**FAST, "CNM_OVERLAY_RESYNC_INTERVAL": "1"})
    c = cluster.stub()
    net = overlay(c, "ov")
    placed = place(c, net, {"a": "h1", "b": "h2", "z": "h3"})
    wait_converged(cluster, net.id, placed)
    assert unreachable_pairs(placed) == []

    # The periodic full resync repairs entries changed behind the driver's back
    # (what a lost pub/sub message would also leave): a missing one comes back,
    # a stray one goes.
    h1_ns = ov_netns(cluster, "h1", net.id)
    b_ep = placed["b"][0]
    osl.delete_fdb("vxlan0", b_ep.mac_address, cluster.hosts["h2"].address, netns=h1_ns)
    osl.delete_neighbour("vxlan0", ip_of(b_ep), netns=h1_ns)
    osl.add_fdb("vxlan0", "02:42:0a:00:00:fe", "192.0.2.99", netns=h1_ns)
    osl.add_neighbour("vxlan0", "10.0.0.254", "02:42:0a:00:00:fe", netns=h1_ns)
    assert entries(cluster, "h1", net.id) != expected_entries(cluster, "h1", placed)
    wait_converged(cluster, net.id, placed, timeout=3)
    z_ep = placed["z"][0]
    z_entry = (z_ep.mac_address, cluster.hosts["h3"].address)

    t0 = time.monotonic()
    cluster.stop_host("h3", signal.SIGKILL)

    def z_gone() -> bool:
        return all(z_entry not in entries(cluster, h, net.id)[0] for h in ("h1", "h2"))

    until(z_gone, "h3's peer withdrawn on h1 and h2", timeout=TTL + 4, interval=0.05)
    elapsed = time.monotonic() - t0
    print(f"h3 killed -> its peer withdrawn everywhere: {elapsed:.2f} s (ttl {TTL} s)")
    # Not before the ttl: the last heartbeat was at most one interval before the kill.
    assert elapsed >= TTL - HEARTBEAT - 0.1
    assert all(
        (ip_of(z_ep), z_ep.mac_address) not in entries(cluster, h, net.id)[1] for h in ("h1", "h2")
    )
    hosts = {h.id: h.state for h in c.ListHosts(pb.ListHostsRequest(), timeout=T).hosts}
    assert hosts == {
        "h1": pb.HOST_STATE_READY,
        "h2": pb.HOST_STATE_READY,
        "h3": pb.HOST_STATE_UNREACHABLE,
    }
    out = subprocess.run(
        [str(BIN / "cnmctl"), "--controller", cluster.controller, "host", "ls"],
        capture_output=True, text=True, timeout=30, check=True,
    ).stdout  # fmt: skip
    states = {line.split()[0]: line for line in out.splitlines()[1:]}
    assert "unreachable" in states["h3"] and "ready" in states["h1"] and "ready" in states["h2"]
    live = {k: v for k, v in placed.items() if k != "z"}
    assert unreachable_pairs(live) == []

    # Back again: its peers return everywhere and traffic flows.
    cluster.start_host("h3")
    until(
        lambda: all(
            entries(cluster, h, net.id) == expected_entries(cluster, h, placed)
            for h in cluster.hosts
        ),
        "h3's peer programmed again",
        timeout=5,
    )
    assert unreachable_pairs(placed) == []


def test_overlay_mtu_is_the_underlay_mtu_minus_50_unless_given(make_cluster):
    cluster = make_cluster(hosts=1, mtu=9000)
    c = cluster.stub()
    jumbo = overlay(c, "jumbo")
    small = overlay(c, "small", options={"com.docker.network.driver.mtu": "1300"})
    for net, mtu in ((jumbo, 8950), (small, 1300)):
        (_ep, _h, sb_ns) = place(c, net, {f"s-{net.name}": "h1"})[f"s-{net.name}"]
        assert osl.get_link("eth0", netns=sb_ns).mtu == mtu
        ov_ns = ov_netns(cluster, "h1", net.id)
        assert osl.get_link("vxlan0", netns=ov_ns).mtu == mtu
        assert osl.get_link("br0", netns=ov_ns).mtu == mtu


def test_explicit_endpoint_on_an_overlay_reaches_a_host_only_when_joined_there(make_cluster):
    """The controller's global-scope path for CreateEndpoint + Join (not Connect):
    the endpoint gets its address at once but exists on no host until joined; the
    network is created lazily on the host it joins; Leave and Delete undo it;
    DeleteNetwork removes the network from every host that had it."""
    cluster = make_cluster(hosts=2)
    c = cluster.stub()
    net = overlay(c, "ov")
    a_sb, a_ep = attach(c, net.id, "a", "h1")
    ep = c.CreateEndpoint(
        pb.CreateEndpointRequest(network=net.id, spec=pb.EndpointSpec(name="late")), timeout=T
    )
    assert ep.ipv4_address and ep.host == "" and ep.state == pb.ENDPOINT_STATE_READY
    client = redis.Redis.from_url(cluster.redis_url, decode_responses=True)
    try:
        assert not client.exists(f"cnm:driver:h2:net:{net.id}"), "h2 has not heard of it yet"
        b_sb = c.CreateSandbox(pb.CreateSandboxRequest(name="b", host="h2"), timeout=T)
        joined = c.Join(pb.JoinRequest(endpoint_id=ep.id, sandbox=b_sb.id), timeout=T)
        assert joined.host == "h2" and joined.state == pb.ENDPOINT_STATE_JOINED
        assert client.exists(f"cnm:driver:h2:net:{net.id}")
        placed = {"a": (a_ep, "h1", ns_of(a_sb)), "late": (joined, "h2", ns_of(b_sb))}
        wait_converged(cluster, net.id, placed)
        assert unreachable_pairs(placed) == []

        c.Leave(pb.LeaveRequest(endpoint_id=ep.id, sandbox=b_sb.id), timeout=T)
        assert not osl.namespace_exists(ov_netns(cluster, "h2", net.id))
        del placed["late"]
        wait_converged(cluster, net.id, placed)
        c.DeleteEndpoint(pb.DeleteEndpointRequest(id=ep.id), timeout=T)
        c.DeleteSandbox(pb.DeleteSandboxRequest(id_or_name="a"), timeout=T)
        assert not osl.namespace_exists(ov_netns(cluster, "h1", net.id))
        c.DeleteNetwork(pb.DeleteNetworkRequest(id_or_name=net.id), timeout=T)
        for host in ("h1", "h2"):
            assert not client.exists(f"cnm:driver:{host}:net:{net.id}")
        assert not client.exists(f"cnm:overlay:{net.id}:peers")
    finally:
        client.close()
