"""osl links on real namespaces: a bridge in a "host" namespace, sandboxes on it, real pings.

All link work happens inside namespaces the tests create; traffic goes only to
addresses inside them.
"""

from __future__ import annotations

import ipaddress
import time
import uuid
from collections.abc import Callable, Iterator

import pytest

from driver_service import osl
from driver_service.osl import Route
from harness import netns as hn
from services.errors import AlreadyExists, Exhausted, InvalidArgument, NotFound

SUBNET4 = "10.77.0.0/24"
SUBNET6 = "fd77::/64"
GW4, GW6 = "10.77.0.1", "fd77::1"


@pytest.fixture
def make_sandbox() -> Iterator[Callable[[], str]]:
    """Creates sandbox namespaces on demand; removes every one of them after the test."""
    made: list[str] = []

    def make() -> str:
        name = f"cnmt-osl-sb-{uuid.uuid4().hex[:8]}"
        osl.create_namespace(name)
        made.append(name)
        return name

    try:
        yield make
    finally:
        osl.wait_for_background_deletes(10)
        for name in made:
            osl.delete_namespace(name)


@pytest.fixture
def bridge(netns_host: str) -> str:
    osl.create_bridge(
        "br-osl", netns=netns_host, mtu=1500, addresses=[f"{GW4}/24", f"{GW6}/64"], alias="cnm:test"
    )
    return "br-osl"


def _join(host: str, sandbox: str, n: int, **kw) -> osl.VethPair:
    return osl.create_veth(
        f"veth-osl{n}",
        "eth0",
        peer_netns=sandbox,
        netns=host,
        bridge="br-osl",
        mtu=1500,
        peer_mac=f"02:42:0a:4d:00:{n:02x}",
        addresses=[f"10.77.0.{n}/24", f"fd77::{n:x}/64"],
        routes=[Route("0.0.0.0/0", GW4), Route("::/0", GW6)],
        **kw,
    )


def test_two_sandboxes_on_one_bridge_ping_each_other_ipv4_and_ipv6(
    netns_host, bridge, make_sandbox
):
    a, b = make_sandbox(), make_sandbox()
    _join(netns_host, a, 2)
    _join(netns_host, b, 3)

    assert hn.ping(a, "10.77.0.3") and hn.ping(b, "10.77.0.2")
    assert hn.ping(a, "fd77::3") and hn.ping(b, "fd77::2")
    assert hn.ping(a, GW4) and hn.ping(a, GW6)


def test_join_leaves_the_sandbox_exactly_as_requested(netns_host, bridge, make_sandbox):
    sb = make_sandbox()
    pair = _join(netns_host, sb, 2, alias="cnm:ep")

    state = osl.snapshot(netns=sb)
    eth0 = next(li for li in state.links if li.name == "eth0")
    assert (eth0.kind, eth0.mac, eth0.mtu, eth0.up) == ("veth", "02:42:0a:4d:00:02", 1500, True)
    assert pair.peer_index == eth0.index
    mine = {str(a.address) for a in state.addresses if a.ifname == "eth0" and a.scope == "global"}
    assert mine == {"10.77.0.2/24", "fd77::2/64"}
    assert not any(a.tentative for a in state.addresses if a.scope == "global")
    defaults = {
        (str(r.dst), str(r.gateway), r.ifname) for r in state.routes if r.dst.prefixlen == 0
    }
    assert defaults == {("0.0.0.0/0", GW4, "eth0"), ("::/0", GW6, "eth0")}

    host_end = osl.get_link(pair.host_name, netns=netns_host)
    assert (host_end.master, host_end.up, host_end.alias) == ("br-osl", True, "cnm:ep")


def test_bridge_has_its_gateways_stp_off_and_a_fixed_mac(netns_host, bridge):
    info = osl.get_link(bridge, netns=netns_host)
    assert (info.kind, info.up, info.mtu, info.alias) == ("bridge", True, 1500, "cnm:test")
    assert info.mac and info.mac != "00:00:00:00:00:00"
    addrs = {
        str(a.address)
        for a in osl.list_addresses(netns=netns_host, ifname=bridge)
        if a.scope == "global"
    }
    assert addrs == {f"{GW4}/24", f"{GW6}/64"}
    shown = hn.run("ip", "-n", netns_host, "-4", "addr", "show", bridge).stdout
    assert f"inet {GW4}/24 brd 10.77.0.255" in shown
    stp = hn.run(
        "ip",
        "netns",
        "exec",
        netns_host,
        "cat",
        f"/sys/class/net/{bridge}/bridge/stp_state",
        check=False,
    )
    assert stp.stdout.strip() == "0"


def test_create_bridge_twice_raises_unless_exist_ok(netns_host, bridge):
    with pytest.raises(AlreadyExists):
        osl.create_bridge(bridge, netns=netns_host)
    again = osl.create_bridge(bridge, netns=netns_host, addresses=[f"{GW4}/24"], exist_ok=True)
    assert again.kind == "bridge" and again.up


def test_veth_with_a_taken_name_raises_already_exists_and_leaves_nothing(
    netns_host, bridge, make_sandbox
):
    sb = make_sandbox()
    _join(netns_host, sb, 2)
    with pytest.raises(AlreadyExists, match="eth0"):
        osl.create_veth("veth-other", "eth0", peer_netns=sb, netns=netns_host, bridge=bridge)
    assert not osl.link_exists("veth-other", netns=netns_host)


def test_failed_join_rolls_back_the_pair(netns_host, bridge, make_sandbox):
    sb = make_sandbox()
    with pytest.raises(InvalidArgument):
        # The gateway is not on any subnet of the sandbox: the kernel refuses the route.
        osl.create_veth(
            "veth-osl9",
            "eth0",
            peer_netns=sb,
            netns=netns_host,
            bridge=bridge,
            addresses=["10.77.0.9/24"],
            routes=[Route("0.0.0.0/0", "10.99.0.1")],
        )
    assert not osl.link_exists("veth-osl9", netns=netns_host)
    assert [li.name for li in osl.list_links(netns=sb)] == ["lo"]


def test_join_on_missing_bridge_or_sandbox_is_not_found(netns_host, make_sandbox):
    sb = make_sandbox()
    with pytest.raises(NotFound, match="no-such-br"):
        osl.create_veth("veth-osl2", "eth0", peer_netns=sb, netns=netns_host, bridge="no-such-br")
    with pytest.raises(NotFound):
        osl.create_veth("veth-osl2", "eth0", peer_netns="cnmt-osl-gone", netns=netns_host)
    assert not osl.link_exists("veth-osl2", netns=netns_host)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"host_name": "x" * 16},
        {"host_name": "bad/name"},
        {"host_name": ".."},
        {"peer_name": "eth 0"},
        {"mtu": 70000},
        {"mtu": 67},
        {"peer_mac": "02:42:0a:4d:00"},
        {"peer_mac": "01:00:5e:00:00:01"},
        {"addresses": ["10.77.0.300/24"]},
        {"addresses": ["10.77.0.2"]},
        {"routes": [Route("10.0.0.1/8", GW4)]},
        {"routes": [Route("0.0.0.0/0", GW6)]},
    ],
    ids=[
        "name-too-long",
        "name-slash",
        "name-dotdot",
        "peer-name-space",
        "mtu-70000",
        "mtu-67",
        "mac-short",
        "mac-multicast",
        "address-bad-octet",
        "address-no-prefix",
        "route-host-bits",
        "route-family-mismatch",
    ],
)
def test_invalid_join_input_is_rejected_before_the_kernel(netns_host, bridge, make_sandbox, kwargs):
    sb = make_sandbox()
    before_host = osl.list_links(netns=netns_host)
    args = {"host_name": "veth-osl5", "peer_name": "eth0", **kwargs}
    with pytest.raises(InvalidArgument):
        osl.create_veth(
            args.pop("host_name"),
            args.pop("peer_name"),
            peer_netns=sb,
            netns=netns_host,
            bridge=bridge,
            **args,
        )
    assert osl.list_links(netns=netns_host) == before_host
    assert [li.name for li in osl.list_links(netns=sb)] == ["lo"]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"mtu": 70000},
        {"mac": "zz:42:0a:4d:00:01"},
        {"addresses": ["fd77::1/129"]},
        {"name": "a-very-long-bridge"},
    ],
    ids=["mtu-70000", "mac-garbage", "v6-prefix-129", "name-too-long"],
)
def test_invalid_bridge_input_is_rejected(netns_host, kwargs):
    args = {"name": "br-bad", **kwargs}
    with pytest.raises(InvalidArgument):
        osl.create_bridge(args.pop("name"), netns=netns_host, **args)
    assert not osl.link_exists("br-bad", netns=netns_host)


def test_deletes_are_idempotent(netns_host, bridge, make_sandbox):
    sb = make_sandbox()
    pair = _join(netns_host, sb, 2)

    assert osl.delete_route("0.0.0.0/0", gateway=GW4, netns=sb) is True
    assert osl.delete_route("0.0.0.0/0", gateway=GW4, netns=sb) is False
    assert osl.delete_address("eth0", "10.77.0.2/24", netns=sb) is True
    assert osl.delete_address("eth0", "10.77.0.2/24", netns=sb) is False
    assert osl.delete_link(pair.host_name, netns=netns_host) is True
    assert osl.delete_link(pair.host_name, netns=netns_host) is False
    assert osl.delete_link("eth0", netns=sb) is False
    assert osl.delete_link(bridge, netns=netns_host) is True
    assert osl.delete_link(bridge, netns=netns_host) is False
    assert osl.delete_link("eth0", netns="cnmt-osl-never-existed") is False


def test_deleting_the_host_end_removes_the_sandbox_end(netns_host, bridge, make_sandbox):
    sb = make_sandbox()
    pair = _join(netns_host, sb, 2)
    osl.delete_link(pair.host_name, netns=netns_host)
    assert [li.name for li in osl.list_links(netns=sb)] == ["lo"]


def test_async_delete_hides_the_link_at_once_and_deletes_it_later(netns_host, bridge, make_sandbox):
    sb = make_sandbox()
    pair = _join(netns_host, sb, 2)

    future = osl.delete_link_async(
        pair.host_name, netns=netns_host, peer_name="eth0", peer_netns=sb
    )

    # Immediately: no eth0 in the sandbox, the names are free, the bridge port is released.
    assert [li.name for li in osl.list_links(netns=sb)] == ["lo"]
    assert not osl.link_exists(pair.host_name, netns=netns_host)
    ports = [li for li in osl.list_links(netns=netns_host, tombstones=True) if li.master == bridge]
    assert ports == []
    rejoined = _join(netns_host, sb, 3)
    assert rejoined.peer_name == "eth0"
    # Later: the tombstones are gone from the kernel too.
    assert future.result(timeout=10) is True
    assert osl.wait_for_background_deletes(10)
    leftovers = [
        li.name
        for li in osl.list_links(netns=netns_host, tombstones=True)
        if li.name.startswith("cnmgc")
    ]
    assert leftovers == []
    assert hn.ping(sb, GW4)


def test_async_delete_of_missing_links_is_success(netns_host, make_sandbox):
    sb = make_sandbox()
    future = osl.delete_link_async("veth-none", netns=netns_host, peer_name="eth0", peer_netns=sb)
    assert future.result(timeout=1) is False
    gone = osl.delete_link_async(
        "veth-none", netns="cnmt-osl-gone", peer_name="eth0", peer_netns="cnmt-osl-gone-too"
    )
    assert gone.result(timeout=1) is False


def test_async_delete_handles_a_sandbox_end_whose_host_end_is_gone(
    netns_host, bridge, make_sandbox
):
    """A Leave retried after a crash: only the sandbox side is still there."""
    sb = make_sandbox()
    other = make_sandbox()
    osl.create_veth("veth-lone", "eth0", peer_netns=sb, netns=other)
    future = osl.delete_link_async("veth-absent", netns=netns_host, peer_name="eth0", peer_netns=sb)
    assert [li.name for li in osl.list_links(netns=sb)] == ["lo"]
    assert future.result(timeout=10) is True
    assert not osl.link_exists("veth-lone", netns=other)


def test_async_delete_leaves_alone_a_sandbox_link_that_is_not_the_veths_other_end(
    netns_host, bridge, make_sandbox
):
    """The sandbox's eth0 belongs to another veth: only this veth goes."""
    sb = make_sandbox()
    other = make_sandbox()
    osl.create_veth("veth-theirs", "eth0", peer_netns=sb, netns=other)
    osl.create_veth("veth-mine", "eth1", peer_netns=sb, netns=netns_host)
    future = osl.delete_link_async("veth-mine", netns=netns_host, peer_name="eth0", peer_netns=sb)
    assert future.result(timeout=10) is True
    assert [li.name for li in osl.list_links(netns=sb)] == ["lo", "eth0"]
    assert osl.link_exists("veth-theirs", netns=other)


def test_reap_tombstones_removes_what_a_crash_left(netns_host, bridge, make_sandbox):
    from driver_service.osl.reaper import _tombstone_named

    sb = make_sandbox()
    pair = _join(netns_host, sb, 2)
    assert _tombstone_named(pair.host_name, netns_host, detach=True)

    assert osl.reap_tombstones(netns_host) is True
    assert osl.reap_tombstones(netns_host) is False
    assert osl.list_links(netns=netns_host, tombstones=True)[-1].name == bridge


def test_vxlan_device_in_a_sandbox_with_its_socket_in_the_host(netns_host, make_sandbox):
    overlay = make_sandbox()
    osl.create_bridge("br-ov", netns=overlay, addresses=["10.88.0.1/24"])

    vx = osl.create_vxlan(
        "vxlan-osl",
        vni=4242,
        local="192.0.2.10",
        dstport=4790,
        mtu=1450,
        netns=overlay,
        underlay_netns=netns_host,
        bridge="br-ov",
    )

    assert vx.kind == "vxlan" and vx.mtu == 1450 and vx.up and vx.master == "br-ov"
    assert vx.vxlan == osl.VxlanInfo(vni=4242, local="192.0.2.10", port=4790, learning=False)
    detail = hn.run("ip", "-n", overlay, "-d", "link", "show", "vxlan-osl").stdout
    assert "vxlan id 4242" in detail and "nolearning" in detail and "dstport 4790" in detail
    assert f"link-netns {netns_host}" in detail

    osl.add_fdb("vxlan-osl", "00:00:00:00:00:00", "192.0.2.11", netns=overlay)
    osl.add_fdb("vxlan-osl", "00:00:00:00:00:00", "192.0.2.12", netns=overlay)
    osl.add_fdb("vxlan-osl", "02:42:0a:58:00:05", "192.0.2.11", netns=overlay)
    osl.add_fdb("vxlan-osl", "02:42:0a:58:00:05", "192.0.2.11", netns=overlay)  # idempotent
    osl.add_neighbour("br-ov", "10.88.0.5", "02:42:0a:58:00:05", netns=overlay)

    fdb = {
        (e.mac, str(e.dst), e.permanent)
        for e in osl.list_fdb("vxlan-osl", netns=overlay)
        if e.dst is not None
    }
    assert fdb == {
        ("00:00:00:00:00:00", "192.0.2.11", True),
        ("00:00:00:00:00:00", "192.0.2.12", True),
        ("02:42:0a:58:00:05", "192.0.2.11", True),
    }
    shown = hn.run("bridge", "-n", overlay, "fdb", "show", "dev", "vxlan-osl").stdout
    assert "02:42:0a:58:00:05 dst 192.0.2.11" in shown
    neigh = osl.list_neighbours(netns=overlay, ifname="br-ov")
    assert [(str(n.ip), n.mac, n.state) for n in neigh if "permanent" in n.state] == [
        ("10.88.0.5", "02:42:0a:58:00:05", ("permanent",))
    ]

    osl.delete_fdb("vxlan-osl", "00:00:00:00:00:00", "192.0.2.12", netns=overlay)
    osl.delete_fdb("vxlan-osl", "00:00:00:00:00:00", "192.0.2.12", netns=overlay)  # idempotent
    remotes = {
        str(e.dst) for e in osl.list_fdb("vxlan-osl", netns=overlay) if e.mac == "00:00:00:00:00:00"
    }
    assert remotes == {"192.0.2.11"}
    assert osl.delete_fdb("vxlan-osl", "02:42:0a:58:00:05", netns=overlay)
    assert not osl.delete_fdb("vxlan-osl", "02:42:0a:58:00:05", netns=overlay)
    assert osl.delete_neighbour("br-ov", "10.88.0.5", netns=overlay)
    assert not osl.delete_neighbour("br-ov", "10.88.0.5", netns=overlay)


@pytest.mark.parametrize(
    "kwargs",
    [{"vni": 0}, {"vni": 1 << 24}, {"dstport": 0}, {"local": "not-an-ip"}, {"mtu": 70000}],
    ids=["vni-0", "vni-too-big", "port-0", "local-garbage", "mtu-70000"],
)
def test_invalid_vxlan_input_is_rejected(netns_host, kwargs):
    args = {"vni": 42, **kwargs}
    with pytest.raises(InvalidArgument):
        osl.create_vxlan("vx-bad", netns=netns_host, **args)
    assert not osl.link_exists("vx-bad", netns=netns_host)


def test_static_routes_inside_a_sandbox(netns_host, bridge, make_sandbox):
    sb = make_sandbox()
    _join(netns_host, sb, 2)
    osl.add_route("10.200.0.0/16", gateway=GW4, ifname="eth0", metric=50, netns=sb)
    osl.add_route("10.200.0.0/16", gateway=GW4, ifname="eth0", metric=50, netns=sb)
    osl.add_route("fd99::/48", gateway=GW6, netns=sb)

    routes = {(str(r.dst), str(r.gateway), r.metric) for r in osl.list_routes(netns=sb)}
    assert ("10.200.0.0/16", GW4, 50) in routes
    assert any(dst == "fd99::/48" and gw == GW6 for dst, gw, _ in routes)
    with pytest.raises(InvalidArgument):
        osl.add_route("10.201.0.0/16", netns=sb)


def test_bridge_port_limit_is_a_clear_exhausted_error(make_sandbox):
    """1,023 ports fill a bridge (~1 s); the next Join must say so, and leave nothing."""
    from driver_service.osl.rtnl import rtnl

    ns = make_sandbox()
    osl.create_bridge("br-full", netns=ns)
    with rtnl(ns) as ipr:
        br = ipr.link_lookup(ifname="br-full")[0]
        for i in range(osl.BRIDGE_MAX_PORTS - 1):
            ipr.link("add", ifname=f"p{i}", kind="veth", peer=f"q{i}", master=br)
    sb = make_sandbox()

    with pytest.raises(Exhausted, match="at most 1024 ports") as err:
        osl.create_veth("veth-last", "eth0", peer_netns=sb, netns=ns, bridge="br-full")
    assert err.value.reason == "BRIDGE_FULL"
    assert not osl.link_exists("veth-last", netns=ns)
    assert [li.name for li in osl.list_links(netns=sb)] == ["lo"]


def test_join_is_fast(netns_host, bridge, make_sandbox):
    """A Join (veth in place + addresses + routes + up) stays in the few-ms range."""
    sb = make_sandbox()
    costs = []
    for n in range(2, 12):
        start = time.perf_counter()
        pair = _join(netns_host, sb, n)
        costs.append(time.perf_counter() - start)
        osl.delete_link_async(pair.host_name, netns=netns_host, peer_name="eth0", peer_netns=sb)
    costs.sort()
    assert costs[len(costs) // 2] < 0.05, costs


def test_mac_and_addresses_are_normalised():
    from driver_service.osl import validate

    assert validate.mac("02-42-AC-11-00-02") == "02:42:ac:11:00:02"
    assert validate.ip_interface("fd77::0002/64") == ipaddress.ip_interface("fd77::2/64")


def test_parallel_joins_from_a_thread_pool(netns_host, bridge, make_sandbox):
    """gRPC runs osl from a thread pool: concurrent Joins must not interfere."""
    from concurrent.futures import ThreadPoolExecutor

    sandboxes = [make_sandbox() for _ in range(8)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        pairs = list(pool.map(lambda i: _join(netns_host, sandboxes[i], i + 2), range(8)))

    assert len({p.host_name for p in pairs}) == 8
    assert all(hn.ping(sb, GW4) for sb in sandboxes[:2])
    assert hn.ping(sandboxes[0], "fd77::9")


def test_calling_from_inside_an_event_loop_is_refused_clearly(netns_host):
    import asyncio

    async def call() -> None:
        osl.list_links(netns=netns_host)

    with pytest.raises(RuntimeError, match="thread"):
        asyncio.run(call())


def test_ipv6_gateway_works_where_ipv6_is_disabled_by_default(netns_host, make_sandbox):
    """Some hosts create interfaces with disable_ipv6=1: osl turns it on per interface."""
    osl.set_sysctl("net.ipv6.conf.default.disable_ipv6", 1, netns=netns_host)
    sb = make_sandbox()
    osl.set_sysctl("net.ipv6.conf.default.disable_ipv6", 1, netns=sb)

    osl.create_bridge("br-v6", netns=netns_host, addresses=["fd78::1/64"])
    osl.create_veth(
        "veth-v6",
        "eth0",
        peer_netns=sb,
        netns=netns_host,
        bridge="br-v6",
        addresses=["fd78::2/64"],
    )

    assert osl.get_sysctl("net/ipv6/conf/br-v6/disable_ipv6", netns=netns_host) == "0"
    assert hn.ping(sb, "fd78::1")


def test_driver_living_in_the_host_namespace_uses_netns_none(netns_host, make_sandbox):
    """In production the driver runs inside the host namespace and passes netns=None.

    Simulated by running the calls on a thread that has entered the test's host
    namespace (osl's own disposable-thread helper), so nothing touches this
    machine's root namespace.
    """
    from driver_service.osl.nsenter import open_netns, run_on_thread

    sb = make_sandbox()

    def as_driver() -> list[str]:
        osl.create_bridge("br-none", addresses=[f"{GW4}/24"])
        osl.create_veth(
            "veth-none",
            "eth0",
            peer_netns=sb,
            bridge="br-none",
            addresses=["10.77.0.2/24"],
            routes=[Route("0.0.0.0/0", GW4)],
        )
        names = [li.name for li in osl.list_links()]
        assert osl.delete_link("veth-none") is True
        return names

    with open_netns(netns_host) as fd:
        names = run_on_thread(as_driver, setns_fd=fd)

    assert names == ["lo", "br-none", "veth-none"]
    assert osl.link_exists("br-none", netns=netns_host)
    assert [li.name for li in osl.list_links(netns=sb)] == ["lo"]
