"""Remote IPAM end to end: a network created with `ipam.driver = <plugin>` gets
its pool, gateway and endpoint addresses from the test plugin (libnetwork's
IpamDriver protocol, through the IPAM service), and they end up on the
sandboxes' interfaces; releases reach the plugin; plugin errors leave nothing."""

from __future__ import annotations

import grpc
import pytest
from controller_env import T, addresses_in, ping_all, sandbox_netns, snapshot
from remote_env import remote_world

from cnm.controller.v1 import controller_pb2 as pb
from cnm.ipam.v1 import ipam_pb2, ipam_pb2_grpc
from cnm.types.v1 import types_pb2

C = grpc.StatusCode
GATEWAY_OPTIONS = {"RequestAddressType": "com.docker.network.gateway"}


@pytest.fixture(scope="module")
def env(redis_server, netns_prefix):
    plugins = [
        ("ipamplug", ["--implements", "IpamDriver", "--ipam-pool", "10.250.0.0/24"]),
        (
            "bothplug",
            ["--implements", "NetworkDriver,IpamDriver", "--ipam-pool", "10.252.0.0/24"],
        ),
        ("ipamfail", ["--implements", "IpamDriver", "--fail", "IpamDriver.RequestPool=dry"]),
        # Killed and restarted by one test (and stopped at its end).
        ("ipamkill", ["--implements", "IpamDriver"]),
    ]
    with remote_world(redis_server, netns_prefix, plugins, ipam_plugins=True) as (w, p, _d):
        yield w, p


@pytest.fixture
def c(env):
    return env[0].stub()


def _remote_pools(c) -> list:
    pools = c.ListPools(pb.ListPoolsRequest(), timeout=T).pools
    return [p for p in pools if p.pool_id.startswith("remote:")]


def _connect_two(c, network: str, prefix: str) -> tuple[list, list]:
    sbs = [c.CreateSandbox(pb.CreateSandboxRequest(name=f"{prefix}{i}"), timeout=T) for i in (0, 1)]
    eps = [c.Connect(pb.ConnectRequest(network=network, sandbox=s.name), timeout=T) for s in sbs]
    return sbs, eps


def _delete(c, sandboxes: list[str], network: str) -> None:
    for name in sandboxes:
        c.DeleteSandbox(pb.DeleteSandboxRequest(id_or_name=name), timeout=T)
    c.DeleteNetwork(pb.DeleteNetworkRequest(id_or_name=network), timeout=T)


def test_bridge_network_gets_pool_and_addresses_from_the_ipam_plugin(env, c):
    _w, plugins = env
    plug = plugins["ipamplug"]
    net = c.CreateNetwork(
        pb.CreateNetworkRequest(name="inet", ipam=pb.IpamSpec(driver="ipamplug")), timeout=T
    )
    try:
        assert net.ipam.driver == "ipamplug"
        assert [(x.subnet, x.gateway) for x in net.ipam.configs] == [
            ("10.250.0.0/24", "10.250.0.1")
        ]
        sbs, eps = _connect_two(c, "inet", "i")
        # The plugin hands out addresses from the top of the pool down.
        assert [e.ipv4_address for e in eps] == ["10.250.0.254/24", "10.250.0.253/24"]
        for ep, sb in zip(eps, sbs, strict=True):
            assert f"inet {ep.ipv4_address} " in addresses_in(sandbox_netns(sb))
            assert ep.gateway == "10.250.0.1"
        assert ping_all(sandbox_netns(sbs[0]), ["10.250.0.253", "10.250.0.1"]) == []

        [pool] = _remote_pools(c)
        assert pool.pool_id == "remote:ipamplug:plugin-pool-1"
        assert (pool.address_space, pool.pool, pool.owner) == (
            "PluginLocal",
            "10.250.0.0/24",
            net.id,
        )
        assert pool.used == 3 and pool.free == 254 - 3
        got = c.GetNetwork(pb.GetNetworkRequest(id_or_name="inet"), timeout=T)
        assert got.subnets[0].ips_in_use == 3

        # The driver service activated it too (it scans the same dir) and left
        # it alone: no NetworkDriver. The IPAM service: activation,
        # capabilities and default spaces once, then the exact calls.
        methods = plug.methods()
        start = methods.index("IpamDriver.GetCapabilities") - 1
        assert methods[start : start + 4] == [
            "Plugin.Activate",
            "IpamDriver.GetCapabilities",
            "IpamDriver.GetDefaultAddressSpaces",
            "IpamDriver.RequestPool",
        ]
        assert methods[:start] == ["Plugin.Activate"]
        assert plug.bodies("IpamDriver.RequestPool") == [
            {"AddressSpace": "PluginLocal", "Pool": "", "SubPool": "", "Options": {}, "V6": False}
        ]
        assert plug.bodies("IpamDriver.RequestAddress") == [
            {"PoolID": "plugin-pool-1", "Address": "", "Options": GATEWAY_OPTIONS},
            {"PoolID": "plugin-pool-1", "Address": "", "Options": {}},
            {"PoolID": "plugin-pool-1", "Address": "", "Options": {}},
        ]
    finally:
        _delete(c, ["i0", "i1"], "inet")
    assert sorted(b["Address"] for b in plug.bodies("IpamDriver.ReleaseAddress")) == [
        "10.250.0.1",
        "10.250.0.253",
        "10.250.0.254",
    ]
    assert plug.bodies("IpamDriver.ReleasePool") == [{"PoolID": "plugin-pool-1"}]
    assert _remote_pools(c) == []


def test_one_plugin_as_network_driver_and_ipam(env, c):
    _w, plugins = env
    plug = plugins["bothplug"]
    net = c.CreateNetwork(
        pb.CreateNetworkRequest(
            name="bnet",
            driver="bothplug",
            ipam=pb.IpamSpec(
                driver="bothplug", configs=[types_pb2.IpamConfig(subnet="10.252.0.0/24")]
            ),
        ),
        timeout=T,
    )
    try:
        sbs, eps = _connect_two(c, "bnet", "b")
        assert [e.ipv4_address for e in eps] == ["10.252.0.254/24", "10.252.0.253/24"]
        assert ping_all(sandbox_netns(sbs[1]), ["10.252.0.254", "10.252.0.1"]) == []
        assert plug.bodies("IpamDriver.RequestPool")[-1]["Pool"] == "10.252.0.0/24"
        [v4] = plug.bodies("NetworkDriver.CreateNetwork")[-1]["IPv4Data"]
        assert v4["Pool"] == "10.252.0.0/24" and v4["Gateway"] == "10.252.0.1/24"
        assert net.scope == types_pb2.SCOPE_LOCAL
    finally:
        _delete(c, ["b0", "b1"], "bnet")
    assert _remote_pools(c) == []


@pytest.mark.parametrize(
    ("driver", "code", "words"),
    [
        pytest.param("nosuchipam", C.NOT_FOUND, "no such IPAM driver 'nosuchipam'", id="unknown"),
        pytest.param("ipamfail", C.FAILED_PRECONDITION, "IpamDriver.RequestPool: dry", id="err"),
        pytest.param("bad/name", C.INVALID_ARGUMENT, "invalid IPAM driver name", id="bad-name"),
    ],
)
def test_ipam_plugin_errors_leave_nothing(env, c, driver, code, words):
    with pytest.raises(grpc.RpcError) as e:
        c.CreateNetwork(
            pb.CreateNetworkRequest(name="xnet", ipam=pb.IpamSpec(driver=driver)), timeout=T
        )
    assert e.value.code() == code and words in e.value.details()
    assert c.ListNetworks(pb.ListNetworksRequest(), timeout=T).networks == []
    assert _remote_pools(c) == []


# --- the IPAM service's remote pools, called directly ------------------------------------------


@pytest.fixture
def ipam(env):
    w, _plugins = env
    with grpc.insecure_channel(w.ipam) as ch:
        yield ipam_pb2_grpc.IpamStub(ch)


def _remote_keys(w) -> dict[str, object]:
    return {k: v for k, v in snapshot(w.redis_url).items() if ":ipam:remote:" in k}


def test_request_pool_retry_with_request_id_reaches_the_plugin_once(env, ipam):
    _w, plugins = env
    plug = plugins["ipamplug"]
    req = ipam_pb2.RequestPoolRequest(
        driver="ipamplug", address_space="LocalDefault", owner="t", request_id="retry-1"
    )
    first = ipam.RequestPool(req, timeout=T)
    mark = plug.mark()
    again = ipam.RequestPool(req, timeout=T)
    assert (again.pool_id, again.pool) == (first.pool_id, first.pool) and plug.since(mark) == []
    other = ipam_pb2.RequestPoolRequest(driver="ipamplug", owner="u", request_id="retry-1")
    with pytest.raises(grpc.RpcError) as e:
        ipam.RequestPool(other, timeout=T)
    assert e.value.code() == C.INVALID_ARGUMENT and "already used" in e.value.details()
    # Releasing a free address is success, and the plugin is not bothered.
    ipam.ReleaseAddress(
        ipam_pb2.ReleaseAddressRequest(pool_id=first.pool_id, address="10.250.0.9"), timeout=T
    )
    assert plug.since(mark) == []
    a = ipam.RequestAddress(
        ipam_pb2.RequestAddressRequest(pool_id=first.pool_id, owner="x"), timeout=T
    )
    allocs = ipam.ListAllocations(ipam_pb2.ListAllocationsRequest(pool_id=first.pool_id), timeout=T)
    assert [(x.address, x.owner) for x in allocs.allocations] == [(a.address.split("/")[0], "x")]
    ipam.ReleasePool(ipam_pb2.ReleasePoolRequest(pool_id=first.pool_id), timeout=T)
    assert plug.since(mark)[-2:] == ["IpamDriver.ReleaseAddress", "IpamDriver.ReleasePool"]


def _pool(ipam) -> str:
    req = ipam_pb2.RequestPoolRequest(driver="ipamplug", pool="10.250.0.0/24", owner="bad-input")
    return ipam.RequestPool(req, timeout=T).pool_id


BAD_CALLS = [
    pytest.param(
        lambda s, pid: s.RequestPool(
            ipam_pb2.RequestPoolRequest(driver="ipamplug", pool="10.250.0.0/33"), timeout=T
        ),
        C.INVALID_ARGUMENT,
        "invalid pool '10.250.0.0/33'",
        id="request-pool-bad-cidr",
    ),
    pytest.param(
        lambda s, pid: s.RequestPool(
            ipam_pb2.RequestPoolRequest(driver="ipamplug", sub_pool="10.250.0.0/25"), timeout=T
        ),
        C.INVALID_ARGUMENT,
        "sub_pool needs a pool",
        id="request-pool-sub-pool-alone",
    ),
    pytest.param(
        lambda s, pid: s.RequestPool(
            ipam_pb2.RequestPoolRequest(driver="ipamplug", request_id="white space"), timeout=T
        ),
        C.INVALID_ARGUMENT,
        "invalid request_id",
        id="request-pool-bad-request-id",
    ),
    pytest.param(
        lambda s, pid: s.RequestPool(ipam_pb2.RequestPoolRequest(driver="no/such"), timeout=T),
        C.INVALID_ARGUMENT,
        "invalid plugin name",
        id="request-pool-bad-driver-name",
    ),
    pytest.param(
        lambda s, pid: s.RequestAddress(
            ipam_pb2.RequestAddressRequest(pool_id=pid, address="10.9.9.9"), timeout=T
        ),
        C.INVALID_ARGUMENT,
        "not in pool",
        id="request-address-outside-pool",
    ),
    pytest.param(
        lambda s, pid: s.RequestAddress(
            ipam_pb2.RequestAddressRequest(pool_id=pid, address="ten"), timeout=T
        ),
        C.INVALID_ARGUMENT,
        "invalid address 'ten'",
        id="request-address-not-an-ip",
    ),
    pytest.param(
        lambda s, pid: s.RequestAddress(
            ipam_pb2.RequestAddressRequest(pool_id="remote:ipamplug:nope"), timeout=T
        ),
        C.NOT_FOUND,
        "no such pool 'remote:ipamplug:nope'",
        id="request-address-unknown-pool",
    ),
    pytest.param(
        lambda s, pid: s.ReleaseAddress(
            ipam_pb2.ReleaseAddressRequest(pool_id=pid, address="x.y"), timeout=T
        ),
        C.INVALID_ARGUMENT,
        "invalid address 'x.y'",
        id="release-address-not-an-ip",
    ),
    pytest.param(
        lambda s, pid: s.ReleasePool(
            ipam_pb2.ReleasePoolRequest(pool_id="remote:ipamplug:nope"), timeout=T
        ),
        C.NOT_FOUND,
        "no such pool",
        id="release-pool-unknown",
    ),
    pytest.param(
        lambda s, pid: s.GetPool(ipam_pb2.GetPoolRequest(pool_id="remote:x:y"), timeout=T),
        C.NOT_FOUND,
        "no such pool 'remote:x:y'",
        id="get-pool-unknown",
    ),
    pytest.param(
        lambda s, pid: s.ListAllocations(
            ipam_pb2.ListAllocationsRequest(pool_id=pid, page_token="bogus"), timeout=T
        ),
        C.INVALID_ARGUMENT,
        "invalid page_token",
        id="list-allocations-bad-token",
    ),
]


@pytest.mark.parametrize(("call", "code", "words"), BAD_CALLS)
def test_bad_input_to_remote_pools_changes_nothing(env, ipam, call, code, words):
    w, plugins = env
    pool_id = _pool(ipam)
    try:
        before, mark = _remote_keys(w), plugins["ipamplug"].mark()
        with pytest.raises(grpc.RpcError) as e:
            call(ipam, pool_id)
        assert e.value.code() == code and words in e.value.details()
        assert _remote_keys(w) == before and plugins["ipamplug"].since(mark) == []
    finally:
        ipam.ReleasePool(ipam_pb2.ReleasePoolRequest(pool_id=pool_id), timeout=T)


def test_ipam_plugin_restarted_is_activated_again(env, ipam):
    w, plugins = env
    plug = plugins["ipamkill"]
    pool = ipam.RequestPool(
        ipam_pb2.RequestPoolRequest(driver="ipamkill", owner="k"), timeout=T
    ).pool_id
    try:
        plug.kill()
        before = _remote_keys(w)
        with pytest.raises(grpc.RpcError) as e:
            ipam.RequestAddress(ipam_pb2.RequestAddressRequest(pool_id=pool, owner="a"), timeout=T)
        assert e.value.code() == C.UNAVAILABLE and "'ipamkill'" in e.value.details()
        assert _remote_keys(w) == before
        plug.start()
        mark = plug.mark()
        addr = ipam.RequestAddress(
            ipam_pb2.RequestAddressRequest(pool_id=pool, owner="a"), timeout=T
        ).address
        assert addr == "10.250.0.254/24"
        assert plug.since(mark)[0] == "Plugin.Activate"
    finally:
        if plug.proc.poll() is not None:
            plug.start()
        ipam.ReleasePool(ipam_pb2.ReleasePoolRequest(pool_id=pool), timeout=T)
        w.spawn.stop(plug.proc)
