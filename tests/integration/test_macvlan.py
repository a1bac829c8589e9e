"""The macvlan driver end to end, with real packets.

The "host" is a namespace where the driver service runs. Each parent is a
veth end in that host namespace whose peer sits in an "external router"
namespace the test builds (holding each subnet's gateway address). Sandboxes
get macvlan children of those parents: they reach each other (bridge mode)
or not (private), the router reaches them and they it, the host does not
(macvlan's rule), passthru takes one child; every refusal has its exact code
and reason and changes nothing; removing a network leaves no link behind.
"""

from __future__ import annotations

import contextlib

import pytest
from controller_env import kernel_view, ping_all, snapshot

from clients.client import Client
from clients.errors import (
    AlreadyExistsError,
    FailedPreconditionError,
    InvalidArgumentError,
    NotFoundError,
)
from cnm.types.v1 import types_pb2
from harness import kernel_snapshot, netns
from harness.netns import exec_in, run
from harness.wait import until
from harness.world import FAST_FAILOVER, World

T = 20.0
# parent in the host namespace -> (router-side name, subnet, router = gateway address)
PARENTS = {
    "mvb0": ("rtb0", "10.90.0.0/24", "10.90.0.1"),
    "mvc0": ("rtc0", "10.91.0.0/24", "10.91.0.1"),
    "mvd0": ("rtd0", "10.92.0.0/24", "10.92.0.1"),
}
PARENT_MTU = 1400
HOST_ADDR = "10.90.0.200"


def _ipam(subnet: str, gateway: str, ip_range: str = "") -> list[types_pb2.IpamConfig]:
    return [types_pb2.IpamConfig(subnet=subnet, gateway=gateway, ip_range=ip_range)]


@pytest.fixture(scope="module")
def world(redis_server, netns_prefix):
    """Host "h1" (a namespace running the driver) with parents mvb0/mvc0/mvd0,
    their peers in the router namespace; network "mvbridge" on mvb0 in bridge
    mode (the host has 10.90.0.200 on mvb0, outside the network's ip-range)."""
    import redis

    from conftest import Spawner

    client = redis.Redis.from_url(redis_server)
    client.flushall()
    client.close()
    w = World(
        Spawner(), redis_server, netns_prefix, tmp_prefix="cnmmv", controller_env=FAST_FAILOVER
    )
    host_ns, router_ns = f"{w.name}-h1", f"{w.name}-r"
    c = None
    try:
        w.add_host("h1", start=False)  # started once its parents are wired
        netns.create(router_ns)
        for parent, (peer, _subnet, router) in PARENTS.items():
            run(
                "ip",
                "-n",
                host_ns,
                "link",
                "add",
                parent,
                "mtu",
                str(PARENT_MTU),
                "type",
                "veth",
                "peer",
                "name",
                peer,
                "netns",
                router_ns,
                "mtu",
                str(PARENT_MTU),
            )
            run("ip", "-n", host_ns, "link", "set", parent, "up")
            run("ip", "-n", router_ns, "addr", "add", f"{router}/24", "dev", peer)
            run("ip", "-n", router_ns, "link", "set", peer, "up")
        run("ip", "-n", host_ns, "addr", "add", f"{HOST_ADDR}/24", "dev", "mvb0")
        run("ip", "-n", router_ns, "addr", "add", "fd91::1/64", "dev", "rtc0", "nodad")
        w.build()
        c = Client(w.controller, timeout=T)
        c.create_network(
            "mvbridge",
            driver="macvlan",
            subnets=_ipam("10.90.0.0/24", "10.90.0.1", "10.90.0.0/25"),
            options={"parent": "mvb0"},
        )
        c.create_sandbox("spare", host="h1")
        yield w, c, host_ns, router_ns
    finally:
        if c is not None:
            c.close()
        try:
            w.close()
        finally:
            netns.delete(router_ns)


def _state(w: World, c: Client, host_ns: str) -> tuple:
    """Stored facts, the pools' usage, the host's links and tagged namespaces.

    Left out: the address bitmaps, whose next-address cursor moves when an
    address is taken and given back; the owners and counts say what is held.
    """
    facts = {k: v for k, v in snapshot(w.redis_url).items() if not k.endswith(":bits")}
    pools = sorted((p.pool, p.owner, p.used, p.free) for p in c.list_pools())
    return facts, pools, kernel_view([host_ns], kernel_snapshot.TEST_TAG)


@contextlib.contextmanager
def _network(c: Client, name: str, **kw):
    """A network for one test; its endpoints and itself deleted afterwards."""
    c.create_network(name, **kw)
    try:
        yield
    finally:
        for ep in c.list_endpoints(network=name):
            c.delete_endpoint(ep.id)
        c.delete_network(name)


def reaches(src_netns: str, addresses: list[str], deadline: float = 10) -> bool:
    """Every address answers a ping from `src_netns` within `deadline` seconds
    (retried: on a loaded machine the first neighbour discovery can be slow)."""
    until(lambda: ping_all(src_netns, addresses) == [], f"{addresses} reached", timeout=deadline)
    return True


def _key(sb) -> str:
    return sb.key.rsplit("/", 1)[1]


def _bare(cidr: str) -> str:
    return cidr.split("/")[0]


def _driver_idle(w: World) -> None:
    """The module's world outlives each test's leftover check: wait for the
    driver's background helpers (conntrack flushes) to exit."""
    pid = w.hosts["h1"].proc.pid
    until(lambda: not kernel_snapshot._children(pid), "driver helpers done", timeout=15)


@pytest.fixture
def boxes(world):
    """Sandboxes made by a test, deleted after it."""
    w, c, _host_ns, _router_ns = world
    made: list[str] = []

    def make(name: str):
        sb = c.create_sandbox(name, host="h1")
        made.append(name)
        return sb

    yield make
    for name in made:
        c.delete_sandbox(name)
    _driver_idle(w)


def test_bridge_mode_sandboxes_and_router_reach_each_other_but_not_the_host(world, boxes):
    w, c, host_ns, router_ns = world
    one, two = boxes("mv-one"), boxes("mv-two")
    ep1, ep2 = c.connect("mvbridge", "mv-one"), c.connect("mvbridge", "mv-two")
    ip1, ip2 = _bare(ep1.ipv4_address), _bare(ep2.ipv4_address)
    assert ep1.mac_address == "02:42:" + ":".join(f"{int(b):02x}" for b in ip1.split("."))
    link = exec_in(_key(one), "ip", "-o", "link", "show", "eth0").stdout
    assert (
        f"mtu {PARENT_MTU}" in link
        and "macvlan" in exec_in(_key(one), "ip", "-d", "-o", "link", "show", "eth0").stdout
    )
    assert "default via 10.90.0.1" in exec_in(_key(one), "ip", "route").stdout
    assert reaches(_key(one), [ip2, "10.90.0.1"])
    assert reaches(_key(two), [ip1, "10.90.0.1"])
    assert reaches(router_ns, [ip1, ip2])
    # macvlan's rule: the parent's own stack and its children do not talk.
    assert ping_all(host_ns, [ip1]) == [ip1]
    assert ping_all(_key(one), [HOST_ADDR]) == [HOST_ADDR]
    # Nothing was made in the host namespace for the endpoints.
    assert not [li for li in kernel_view([host_ns], "")[host_ns] if li.startswith("veth")]


def test_private_mode_from_a_config_network_children_do_not_talk(world, boxes):
    w, c, host_ns, router_ns = world
    cfg = {
        "config_only": True,
        "subnets": _ipam("10.91.0.0/24", "10.91.0.1"),
        "options": {"parent": "mvc0", "macvlan_mode": "private"},
    }
    with (
        _network(c, "mvcfg", **cfg),
        _network(c, "mvprivate", driver="macvlan", config_from="mvcfg", host="h1"),
    ):
        net = c.get_network("mvprivate")
        assert net.config_from == "mvcfg" and net.options["macvlan_mode"] == "private"
        boxes("mv-p1"), boxes("mv-p2")
        a, b = c.connect("mvprivate", "mv-p1"), c.connect("mvprivate", "mv-p2")
        ip1, ip2 = _bare(a.ipv4_address), _bare(b.ipv4_address)
        one = _key(c.get_sandbox("mv-p1"))
        assert reaches(router_ns, [ip1, ip2])
        assert reaches(one, ["10.91.0.1"])
        # Private: no traffic between children of one parent, even on one subnet.
        assert ping_all(one, [ip2]) == [ip2]


def test_vepa_dual_stack_children_reach_the_router_not_each_other_directly(world, boxes):
    w, c, host_ns, router_ns = world
    subnets = [
        *_ipam("10.91.0.0/24", "10.91.0.1"),
        types_pb2.IpamConfig(subnet="fd91::/64", gateway="fd91::1"),
    ]
    opts = {"parent": "mvc0", "macvlan_mode": "vepa"}
    with _network(
        c, "mvvepa", driver="macvlan", subnets=subnets, enable_ipv6=True, options=opts, host="h1"
    ):
        boxes("mv-v1"), boxes("mv-v2")
        a, b = c.connect("mvvepa", "mv-v1"), c.connect("mvvepa", "mv-v2")
        one = _key(c.get_sandbox("mv-v1"))
        assert a.ipv6_address.startswith("fd91::")
        assert "default via fd91::1" in exec_in(one, "ip", "-6", "route").stdout
        mine = [_bare(x) for x in (a.ipv4_address, a.ipv6_address, b.ipv4_address, b.ipv6_address)]
        assert reaches(router_ns, mine)
        assert reaches(one, ["10.91.0.1", "fd91::1"])
        # vepa: child-to-child frames go out to the wire; this router does not hairpin them.
        assert ping_all(one, [_bare(b.ipv4_address)]) == [_bare(b.ipv4_address)]


def test_passthru_takes_one_child_with_the_parents_mac(world, boxes):
    w, c, host_ns, router_ns = world
    parent_mac = exec_in(host_ns, "cat", "/sys/class/net/mvd0/address").stdout.strip()
    with _network(
        c,
        "mvpass",
        driver="macvlan",
        subnets=_ipam("10.92.0.0/24", "10.92.0.1"),
        options={"parent": "mvd0", "macvlan_mode": "passthru"},
        host="h1",
    ):
        boxes("mv-t1")
        ep = c.connect("mvpass", "mv-t1")
        assert ep.mac_address == parent_mac
        assert reaches(router_ns, [_bare(ep.ipv4_address)])
        before = _state(w, c, host_ns)
        with pytest.raises(FailedPreconditionError) as err:
            c.connect("mvpass", "spare")
        assert err.value.reason == "PASSTHRU_IN_USE", err.value
        assert "takes one container only" in err.value.message
        assert _state(w, c, host_ns) == before


@pytest.mark.parametrize(
    "opts",
    [
        pytest.param({"options": {}}, id="no-parent"),
        pytest.param({"options": {"parent": "mvb0"}, "internal": True}, id="internal"),
    ],
)
def test_isolated_parent_joins_sandboxes_and_goes_with_the_network(world, boxes, opts):
    w, c, host_ns, router_ns = world
    host_links = kernel_view([host_ns], "")[host_ns]
    mine = f"{w.netns_prefix}mv-h1-"

    def isolated() -> list[str]:
        return [n for n in run("ip", "netns", "list").stdout.split() if n.startswith(mine)]

    assert isolated() == []
    with _network(
        c, "mviso", driver="macvlan", subnets=_ipam("10.93.0.0/24", "10.93.0.1"), host="h1", **opts
    ):
        net = c.get_network("mviso")
        assert isolated() == [mine + net.id[:12]]
        links = exec_in(isolated()[0], "ip", "-o", "link", "show").stdout
        assert "mvparent" in links and "mvpeer" in links
        boxes("mv-i1"), boxes("mv-i2")
        a, b = c.connect("mviso", "mv-i1"), c.connect("mviso", "mv-i2")
        assert a.ipv4_address.startswith("10.93.0.")
        one = _key(c.get_sandbox("mv-i1"))
        assert reaches(one, [_bare(b.ipv4_address)])
        # Nothing outside: not the router, not the host.
        assert ping_all(one, ["10.90.0.1", HOST_ADDR]) == ["10.90.0.1", HOST_ADDR]
        route = exec_in(one, "ip", "route").stdout
        assert ("default via 10.93.0.1" in route) is not opts.get("internal", False)
    assert isolated() == []
    assert kernel_view([host_ns], "")[host_ns] == host_links


def _refusal_cases():
    def create(**kw):
        def call(c):
            kw.setdefault("subnets", _ipam("10.94.0.0/24", "10.94.0.1"))
            c.create_network("mvbad", driver="macvlan", host="h1", **kw)

        return call

    return [
        pytest.param(
            create(options={"parent": "nope0"}),
            NotFoundError,
            "PARENT_NOT_FOUND",
            "parent interface 'nope0' was not found",
            id="parent-missing",
        ),
        pytest.param(
            create(options={"parent": "mvc0.10"}),
            FailedPreconditionError,
            "VLAN_UNSUPPORTED",
            "no 802.1q VLAN support",
            id="vlan-kernel-lacks-8021q",
        ),
        pytest.param(
            create(options={"parent": "nope0.10"}),
            NotFoundError,
            "PARENT_NOT_FOUND",
            "'nope0'",
            id="vlan-base-missing",
        ),
        pytest.param(
            create(options={"parent": "mvc0.5000"}),
            InvalidArgumentError,
            "INVALID_OPTION",
            "vlan id must be between 1-4094",
            id="vlan-id-out-of-range",
        ),
        pytest.param(
            create(options={"parent": "lo"}),
            InvalidArgumentError,
            "INVALID_OPTION",
            "loopback",
            id="parent-lo",
        ),
        pytest.param(
            create(options={"parent": "mvc0", "macvlan_mode": "bogus"}),
            InvalidArgumentError,
            "INVALID_OPTION",
            "'bogus' is not valid",
            id="bad-mode",
        ),
        pytest.param(
            create(options={"macvlan_mode": "passthru"}),
            InvalidArgumentError,
            "PARENT_REQUIRED",
            "passthru",
            id="passthru-without-parent",
        ),
        pytest.param(
            create(options={"parent": "mvc0", "com.docker.network.driver.mtu": "1300"}),
            InvalidArgumentError,
            "INVALID_OPTION",
            "MTU from the parent",
            id="mtu",
        ),
        pytest.param(
            create(options={"parent": "mvb0", "macvlan_mode": "private"}),
            FailedPreconditionError,
            "PARENT_IN_USE",
            "already used by macvlan network 'mvbridge' in bridge mode",
            id="parent-used-in-another-mode",
        ),
        pytest.param(
            create(options={"parent": "mvb0", "macvlan_mode": "passthru"}),
            FailedPreconditionError,
            "PARENT_IN_USE",
            "'mvbridge'",
            id="passthru-on-a-used-parent",
        ),
        pytest.param(
            create(options={"parent": "mvc0"}, subnets=_ipam("10.90.0.0/16", "10.90.0.1")),
            AlreadyExistsError,
            "POOL_OVERLAP",
            "10.90.0.0/24",
            id="subnet-overlap",
        ),
        pytest.param(
            lambda c: c.connect(
                "mvbridge",
                "spare",
                port_bindings=[
                    types_pb2.PortBinding(
                        protocol=types_pb2.PROTOCOL_TCP, host_port=8080, container_port=80
                    )
                ],
            ),
            FailedPreconditionError,
            "PORTS_NOT_SUPPORTED",
            "port mappings",
            id="published-port",
        ),
    ]


@pytest.mark.parametrize(("call", "error", "reason", "words"), _refusal_cases())
def test_refusal_has_its_code_and_changes_nothing(world, call, error, reason, words):
    w, c, host_ns, router_ns = world
    before = _state(w, c, host_ns)
    with pytest.raises(error) as err:
        call(c)
    assert err.value.reason == reason, err.value
    assert words in err.value.message, err.value.message
    assert _state(w, c, host_ns) == before
