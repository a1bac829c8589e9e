"""dockerd with cnm as its network and IPAM plugin (cnm-docker-plugin), one host.

One world for the module (tests/integration/docker_world.py): cnm on a
one-host simulated cluster, the plugin on socket `cnm`, a private dockerd in
the host's namespace. Each test removes its containers and networks and
checks that cnm holds nothing afterwards.
"""

from __future__ import annotations

import json
import uuid

import pytest
import redis
from docker_world import DockerWorld, call

from harness.dockerd import IMAGE, INDEX, DockerError

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def world(redis_server, netns_prefix):
    client = redis.Redis.from_url(redis_server)
    client.flushall()
    client.close()
    w = DockerWorld(redis_server, netns_prefix, hosts=1, plugins={"cnm": []}).build()
    yield w
    w.close()


def cnm_state(world) -> tuple[list, list, list]:
    c = world.cnm
    return (
        [n.name for n in c.list_networks()],
        [e.name for e in c.list_endpoints()],
        [s.name for s in c.list_sandboxes()],
    )


def assert_cnm_empty(world) -> None:
    assert cnm_state(world) == ([], [], [])


def cleanup(d, containers=(), networks=()) -> None:
    if containers:
        d.run("rm", "-f", *containers, check=False)
    for net in networks:
        d.run("network", "rm", net, check=False)


def ip_of(d, container: str, network: str) -> str:
    return d.out(
        "inspect", "-f", f"{{{{.NetworkSettings.Networks.{network}.IPAddress}}}}", container
    )


def pings(d, container: str, address: str) -> bool:
    return d.run("exec", container, "ping", "-c1", "-W5", address, check=False).returncode == 0


def test_network_create_run_ping_and_inspect_show_cnm_addresses(world):
    d = world.docker()
    net_id = d.out(
        "network", "create", "-d", "cnm", "--ipam-driver", "cnm", "--subnet", "10.201.0.0/24", "n1"
    )
    try:
        d.out("run", "-d", "--name", "c1", "--network", "n1", IMAGE, "sleep", "600")
        d.out("run", "-d", "--name", "c2", "--network", "n1", "--network-alias", "web",
              IMAGE, "sleep", "600")  # fmt: skip
        ip1, ip2 = ip_of(d, "c1", "n1"), ip_of(d, "c2", "n1")
        assert pings(d, "c1", ip2) and pings(d, "c2", ip1)
        # Docker's embedded DNS works on cnm's networks: names and aliases.
        assert pings(d, "c1", "c2") and pings(d, "c1", "web")

        inspect = json.loads(d.out("network", "inspect", "n1"))[0]
        assert inspect["Driver"] == "cnm" and inspect["IPAM"]["Driver"] == "cnm"
        assert inspect["IPAM"]["Config"] == [{"Subnet": "10.201.0.0/24"}]
        shown = {c["Name"]: c["IPv4Address"] for c in inspect["Containers"].values()}
        # What Docker shows is what cnm handed out and holds.
        cnm_net = world.cnm.get_network(f"docker-{net_id[:12]}")
        assert cnm_net.driver == "bridge"
        assert [(c.subnet, c.gateway) for c in cnm_net.ipam.configs] == [
            ("10.201.0.0/24", "10.201.0.1")
        ]
        held = {e.ipv4_address for e in world.cnm.list_endpoints(network=cnm_net.id)}
        assert set(shown.values()) == held == {f"{ip1}/24", f"{ip2}/24"}
        # Inside the container: the interface Docker moved, renamed eth0, and the gateway.
        route = d.out("exec", "c1", "ip", "route")
        assert "default via 10.201.0.1 dev eth0" in route
        sandboxes = {s.name: s for s in world.cnm.list_sandboxes()}
        assert len(sandboxes) == 2
        assert all(s.runtime_moves_interfaces for s in sandboxes.values())
    finally:
        cleanup(d, ["c1", "c2"], ["n1"])
    assert "n1" not in d.out("network", "ls", "--format", "{{.Name}}").split()
    assert_cnm_empty(world)


def test_published_port_reaches_httpd_through_cnm_port_mapper(world):
    d = world.docker()
    host = world.hosts["h1"]
    # Docker's own IPAM this time: cnm takes the subnet and addresses as given.
    d.out("network", "create", "-d", "cnm", "--subnet", "10.202.0.0/24", "n2")
    try:
        d.out("run", "-d", "--name", "web", "--network", "n2", "-p", "8080:80", IMAGE,
              "httpd", "-f", "-p", "80", "-h", "/www")  # fmt: skip
        for address in (host.address, "127.0.0.1"):
            assert world.http_get("h1", f"http://{address}:8080/") == INDEX.decode()
        (ep,) = world.cnm.list_endpoints()
        assert [(b.host_port, b.container_port) for b in ep.published_ports] == [(8080, 80)]

        # The same host port again: cnm's port mapper refuses, Docker says so, nothing stays.
        with pytest.raises(DockerError) as err:
            d.out("run", "-d", "--name", "web2", "--network", "n2", "-p", "8080:80", IMAGE,
                  "httpd", "-f", "-p", "80", "-h", "/www")  # fmt: skip
        assert "port is already allocated" in err.value.stderr
        assert [e.name for e in world.cnm.list_endpoints()] == [ep.name]
        assert len(world.cnm.list_sandboxes()) == 1
    finally:
        cleanup(d, ["web", "web2"], ["n2"])
    assert_cnm_empty(world)


def test_network_connect_and_disconnect(world):
    d = world.docker()
    d.out(
        "network", "create", "-d", "cnm", "--ipam-driver", "cnm", "--subnet", "10.203.0.0/24", "n3"
    )
    d.out(
        "network", "create", "-d", "cnm", "--ipam-driver", "cnm", "--subnet", "10.204.0.0/24", "n4"
    )
    try:
        d.out("run", "-d", "--name", "ca", "--network", "n3", IMAGE, "sleep", "600")
        d.out("run", "-d", "--name", "cb", "--network", "n4", IMAGE, "sleep", "600")
        d.out("network", "connect", "--ip", "10.204.0.50", "n4", "ca")
        assert ip_of(d, "ca", "n4") == "10.204.0.50"
        assert "10.204.0.50/24" in d.out("exec", "ca", "ip", "-o", "-4", "addr", "show", "eth1")
        assert pings(d, "ca", ip_of(d, "cb", "n4")) and pings(d, "cb", "10.204.0.50")
        (sb,) = [s for s in world.cnm.list_sandboxes() if len(s.endpoints) == 2]

        d.out("network", "disconnect", "n4", "ca")
        assert "10.204.0.50" not in d.out("exec", "ca", "ip", "-o", "addr")
        assert len(world.cnm.get_sandbox(sb.id).endpoints) == 1
        addresses = {e.ipv4_address for e in world.cnm.list_endpoints()}
        assert "10.204.0.50/24" not in addresses
    finally:
        cleanup(d, ["ca", "cb"], ["n3", "n4"])
    assert_cnm_empty(world)


def test_plugin_killed_and_restarted(world):
    d = world.docker()
    # A plugin of this test's own (driver "cnmr"): every process a test starts is
    # stopped by the test, and the module's plugin stays as it was.
    plugin = world.plugin("h1", "cnmr").start()
    try:
        d.out("network", "create", "-d", "cnmr", "--ipam-driver", "cnmr",
              "--subnet", "10.205.0.0/24", "n5")  # fmt: skip
        for c in ("r1", "r2"):
            d.out("run", "-d", "--name", c, "--network", "n5", IMAGE, "sleep", "600")
        plugin.kill()
        # The plugin is not on the data path: traffic goes on without it.
        assert pings(d, "r1", ip_of(d, "r2", "n5"))
        plugin.start()
        d.out("run", "-d", "--name", "r3", "--network", "n5", IMAGE, "sleep", "600")
        assert pings(d, "r3", ip_of(d, "r1", "n5")) and pings(d, "r1", ip_of(d, "r3", "n5"))
        d.out("rm", "-f", "r1")
        assert len(world.cnm.list_endpoints()) == 2
        cleanup(d, ["r2", "r3"], ["n5"])
        assert_cnm_empty(world)
    finally:
        cleanup(d, ["r1", "r2", "r3"], ["n5"])
        world.spawn.stop(plugin.proc)


# --------------------------------------------------------------------------- bad input


def test_cnm_ipam_without_subnet_is_refused_clearly(world):
    d = world.docker()
    with pytest.raises(DockerError) as err:
        d.out("network", "create", "-d", "cnm", "--ipam-driver", "cnm", "nosubnet")
    assert "the cnm IPAM driver needs a subnet (--subnet)" in err.value.stderr
    assert "nosubnet" not in d.out("network", "ls", "--format", "{{.Name}}").split()
    assert_cnm_empty(world)


def test_overlapping_subnet_is_refused_and_leaves_nothing(world):
    d = world.docker()
    d.out(
        "network", "create", "-d", "cnm", "--ipam-driver", "cnm", "--subnet", "10.206.0.0/24", "n6"
    )
    try:
        before = cnm_state(world)
        # Docker's own IPAM does not know cnm's pools; cnm refuses the overlap.
        with pytest.raises(DockerError) as err:
            d.out("network", "create", "-d", "cnm", "--subnet", "10.206.0.0/25", "n7")
        assert "10.206.0.0" in err.value.stderr
        assert "n7" not in d.out("network", "ls", "--format", "{{.Name}}").split()
        assert cnm_state(world) == before
    finally:
        cleanup(d, networks=["n6", "n7"])
    assert_cnm_empty(world)


def test_controller_down_gives_a_clear_error_and_leaves_nothing(world):
    d = world.docker()
    # A plugin of this test's own whose controller is down (nothing listens there).
    plugin = world.plugin("h1", "cnmdown").start()
    plugin.argv[plugin.argv.index("--controller") + 1] = f"unix://{world.run_dir}/gone.sock"
    world.spawn.stop(plugin.proc)
    plugin.start()
    try:
        with pytest.raises(DockerError) as err:
            d.out("network", "create", "-d", "cnmdown", "--subnet", "10.207.0.0/24", "n8")
        assert f"cannot reach the controller at unix://{world.run_dir}/gone.sock" in (
            err.value.stderr
        )
    finally:
        world.spawn.stop(plugin.proc)
    assert "n8" not in d.out("network", "ls", "--format", "{{.Name}}").split()
    assert_cnm_empty(world)


NET = "a" * 64
EP = "b" * 64


@pytest.mark.parametrize(
    ("method", "body", "status", "err"),
    [
        pytest.param("NetworkDriver.Join", {"NetworkID": NET, "EndpointID": EP, "SandboxKey": "/x"},
                     200, f"network {NET[:12]} not found in cnm", id="join-unknown-network"),
        pytest.param("NetworkDriver.CreateEndpoint", {"NetworkID": NET, "EndpointID": EP},
                     200, f"network {NET[:12]} not found in cnm", id="endpoint-unknown-network"),
        pytest.param("NetworkDriver.EndpointOperInfo", {"NetworkID": NET, "EndpointID": EP},
                     200, f"network {NET[:12]} not found in cnm", id="operinfo-unknown-network"),
        pytest.param("NetworkDriver.CreateNetwork", {"NetworkID": "xyz"},
                     200, "NetworkID 'xyz': expected 64 hex characters", id="bad-network-id"),
        pytest.param("NetworkDriver.Join", {"NetworkID": NET},
                     200, "EndpointID is required", id="missing-endpoint-id"),
        pytest.param("IpamDriver.RequestPool", {"Pool": "10.0.0.300/24"},
                     200, "invalid subnet '10.0.0.300/24'", id="bad-subnet"),
        pytest.param("IpamDriver.RequestAddress", {"PoolID": "cnm:10.9.0.0/24",
                     "Address": "10.8.0.1"}, 200, "address 10.8.0.1 is not in subnet 10.9.0.0/24",
                     id="address-outside-pool"),
        pytest.param("IpamDriver.RequestAddress", {"PoolID": "cnm:10.9.0.0/24"}, 200,
                     "no cnm network has subnet 10.9.0.0/24", id="address-no-network"),
        pytest.param("NetworkDriver.CreateNetwork", b"{not json", 400, "request is not JSON",
                     id="malformed-json"),
        pytest.param("NetworkDriver.Frobnicate", {}, 404, "unknown method", id="unknown-method"),
    ],
)  # fmt: skip
def test_bad_requests_get_errors_docker_shows(world, method, body, status, err):
    sock = world.hosts["h1"].plugins["cnm"].socket
    got_status, got = call(sock, method, body)
    assert got_status == status
    assert err in got["Error" if method.startswith("IpamDriver.") else "Err"]
    assert_cnm_empty(world)


def test_create_and_delete_network_are_idempotent(world):
    sock = world.hosts["h1"].plugins["cnm"].socket
    net_id = uuid.uuid4().hex * 2
    body = {
        "NetworkID": net_id,
        "Options": {"com.docker.network.generic": {}},
        "IPv4Data": [{"AddressSpace": "x", "Pool": "10.208.0.0/24", "Gateway": "10.208.0.1/24"}],
    }
    assert call(sock, "NetworkDriver.CreateNetwork", body) == (200, {})
    # A retry (Docker lost the first answer) is the same network, not a second one.
    assert call(sock, "NetworkDriver.CreateNetwork", body) == (200, {})
    assert [n.name for n in world.cnm.list_networks()] == [f"docker-{net_id[:12]}"]
    ref = {"NetworkID": net_id, "EndpointID": EP}
    assert call(sock, "NetworkDriver.EndpointOperInfo", ref) == (
        200,
        {"Err": f"endpoint {EP[:12]} not found in cnm"},
    )
    # Teardown of what is not there succeeds (Docker retries after a crash).
    assert call(sock, "NetworkDriver.Leave", ref) == (200, {})
    assert call(sock, "NetworkDriver.DeleteEndpoint", ref) == (200, {})
    for _ in range(2):
        assert call(sock, "NetworkDriver.DeleteNetwork", {"NetworkID": net_id}) == (200, {})
    assert_cnm_empty(world)


def test_an_address_reserved_by_an_earlier_plugin_process_becomes_the_endpoint(world):
    first = world.hosts["h1"].plugins["cnm"].socket
    # A second plugin process on the same controller knows nothing of the first's
    # reservations: as the first one after a restart.
    later = world.plugin("h1", "cnmlater").start()
    net_id, ep_id = uuid.uuid4().hex * 2, uuid.uuid4().hex * 2
    try:
        pool = {"Pool": "10.209.0.0/24", "AddressSpace": "CnmLocal"}
        assert call(first, "IpamDriver.RequestPool", pool)[1]["PoolID"] == "cnm:10.209.0.0/24"
        body = {"NetworkID": net_id, "IPv4Data": [{"Pool": "10.209.0.0/24",
                "Gateway": "10.209.0.1/24", "AddressSpace": "CnmLocal"}]}  # fmt: skip
        assert call(first, "NetworkDriver.CreateNetwork", body) == (200, {})
        status, got = call(first, "IpamDriver.RequestAddress", {"PoolID": "cnm:10.209.0.0/24"})
        assert (status, got["Address"]) == (200, "10.209.0.2/24")
        ref = {"NetworkID": net_id, "EndpointID": ep_id}
        status, _ = call(later.socket, "NetworkDriver.CreateEndpoint",
                         {**ref, "Interface": {"Address": "10.209.0.2/24"}})  # fmt: skip
        assert status == 200
        (ep,) = world.cnm.list_endpoints()
        assert (ep.name, ep.ipv4_address) == (f"docker-{ep_id[:12]}", "10.209.0.2/24")
        assert call(later.socket, "NetworkDriver.DeleteEndpoint", ref) == (200, {})
        addr = {"PoolID": "cnm:10.209.0.0/24", "Address": "10.209.0.2"}
        assert call(later.socket, "IpamDriver.ReleaseAddress", addr) == (200, {})
        assert call(later.socket, "NetworkDriver.DeleteNetwork", {"NetworkID": net_id}) == (
            200,
            {},
        )
    finally:
        world.spawn.stop(later.proc)
    assert_cnm_empty(world)


def test_internal_ipv6_and_driver_options_reach_cnm(world):
    d = world.docker()
    d.out("network", "create", "-d", "cnm", "--ipam-driver", "cnm", "--internal", "--ipv6",
          "--subnet", "10.212.0.0/24", "--subnet", "fd00:212::/64",
          "-o", "com.docker.network.bridge.name=cnmtest212", "n9")  # fmt: skip
    try:
        (net,) = world.cnm.list_networks()
        assert net.internal and net.enable_ipv6
        assert net.options["com.docker.network.bridge.name"] == "cnmtest212"
        assert {c.subnet for c in net.ipam.configs} == {"10.212.0.0/24", "fd00:212::/64"}
        links = world.cluster.host_exec("h1", "ip", "-o", "link", "show", "cnmtest212")
        assert "cnmtest212" in links.stdout
        for c in ("v1", "v2"):
            d.out("run", "-d", "--name", c, "--network", "n9", IMAGE, "sleep", "600")
        ip6 = d.out("inspect", "-f", "{{.NetworkSettings.Networks.n9.GlobalIPv6Address}}", "v2")
        assert ip6.startswith("fd00:212::")
        assert {e.ipv6_address.split("/")[0] for e in world.cnm.list_endpoints()} >= {ip6}
        assert pings(d, "v1", ip6) and pings(d, "v1", ip_of(d, "v2", "n9"))
        # Internal: no gateway, so no default route in the container.
        assert "default" not in d.out("exec", "v1", "ip", "route")
    finally:
        cleanup(d, ["v1", "v2"], ["n9"])
    assert_cnm_empty(world)
