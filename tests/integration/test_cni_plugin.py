"""cnm-cni driven exactly as libcni drives a plugin, against a real cnm stack.

Every call is the executable run with CNI_* variables and the configuration
on stdin, in the test host's namespace; results are checked against the
spec's result structure, errors against its error structure and codes.
Chains use Debian's reference plugins (`loopback` before, `tuning` and
`bandwidth` after: bandwidth shapes the host end of cnm's veth, which it finds
in the result).
"""

from __future__ import annotations

import uuid

import pytest
from cni_env import LibCni, exec_plugin, make_bin_dir, validate_error, validate_result
from controller_env import snapshot
from ports_world import ask, serve

from clients.client import Client
from clients.cni.commands import DEFAULT_ROUTE_OPTION, IFNAME_OPTION
from harness import kernel_snapshot, netns
from harness.world import FAST_FAILOVER, World, single_host

SUBNET = "10.93.0.0/24"
# The gateway is the one address a bridge network holds by itself.
EMPTY = {"sandboxes": [], "endpoints": [], "addresses_used": 1}


@pytest.fixture
def world(spawn, redis_url, netns_prefix, netns_host):
    with single_host(
        spawn, redis_url, netns_host, netns_prefix, tmp_prefix="cnmcni",
        controller_env=FAST_FAILOVER,
    ) as w:  # fmt: skip
        with Client(w.controller) as cnm:
            cnm.create_network("cninet", subnets=[_ipam(SUBNET)])
        w.bin_dir = make_bin_dir(w.run_dir / "bin", "loopback", "tuning", "bandwidth")
        yield w
        if w.procs["controller"].poll() is not None:
            w.start_controller()  # a test stopped it: cleanup goes through the API


def _ipam(subnet: str):
    from clients.client import IpamConfig

    return IpamConfig(subnet=subnet)


@pytest.fixture
def containers():
    """Makes tagged namespaces ("containers") on demand; removes them all after."""
    made: list[str] = []

    def make() -> tuple[str, str]:
        name = f"cnmtest-{kernel_snapshot.TEST_TAG}-c{uuid.uuid4().hex[:6]}"
        netns.create(name)
        made.append(name)
        return name, f"/run/netns/{name}"

    try:
        yield make
    finally:
        for name in made:
            netns.delete(name)


def conflist(world: World, version: str, *plugins: dict, name: str = "cninet") -> dict:
    cnm = {
        "type": "cnm",
        "network": "cninet",
        "controller": world.controller,
        "capabilities": {"portMappings": True},
    }
    chain = [cnm if p == "cnm" else p for p in plugins] if plugins else [cnm]
    return {"cniVersion": version, "name": name, "plugins": chain}


def cnm_state(world: World) -> dict:
    """What cnm holds: sandboxes, endpoints, addresses in use."""
    with Client(world.controller) as cnm:
        return {
            "sandboxes": sorted(s.name for s in cnm.list_sandboxes()),
            "endpoints": sorted(e.id for e in cnm.list_endpoints()),
            "addresses_used": sum(p.used for p in cnm.list_pools()),
        }


def test_chain_loopback_cnm_tuning_bandwidth_add_check_ping_port_del(world, containers, netns_host):
    rate = {"ingressRate": 80_000_000, "ingressBurst": 800_000}
    chain = conflist(
        world,
        "1.0.0",
        {"type": "loopback"},
        "cnm",
        {"type": "tuning", "sysctl": {"net.ipv4.conf.eth0.rp_filter": "2"}},
        {"type": "bandwidth", **rate},
    )
    cni = LibCni(chain, world.bin_dir, netns_host)
    c1, c1_path = containers()
    c2, c2_path = containers()
    mapping = [{"hostPort": 18080, "containerPort": 80, "protocol": "tcp"}]

    added = cni.add("ctr-one", c1_path, portMappings=mapping)
    assert added.code == 0, added
    res = added.out
    validate_result(res, "1.0.0")
    # loopback's interface first, then cnm's veth (host end, container end),
    # the address pointing at the container end
    host_veth = res["interfaces"][1]["name"]
    assert [i["name"] for i in res["interfaces"]] == ["lo", host_veth, "eth0"]
    assert "sandbox" not in res["interfaces"][1]
    assert res["interfaces"][2]["sandbox"] == c1_path
    ours = [ip for ip in res["ips"] if ip["interface"] == 2]
    assert len(ours) == 1 and ours[0]["address"].startswith("10.93.0.")
    assert ours[0]["gateway"] == "10.93.0.1"
    assert {"dst": "0.0.0.0/0", "gw": "10.93.0.1"} in res["routes"]
    c1_ip = ours[0]["address"].split("/")[0]
    shown = netns.exec_in(c1, "ip", "-o", "addr", "show", "dev", "eth0").stdout
    assert ours[0]["address"] in shown
    assert netns.exec_in(c1, "cat", "/proc/sys/net/ipv4/conf/eth0/rp_filter").stdout.strip() == "2"
    # bandwidth shaped the host end cnm reported
    qdisc = netns.exec_in(netns_host, "tc", "qdisc", "show", "dev", host_veth).stdout
    assert "tbf" in qdisc, qdisc

    res2 = cni.add("ctr-two", c2_path)
    assert res2.code == 0, res2
    validate_result(res2.out, "1.0.0")
    assert netns.ping(c2, c1_ip)

    # the published port reaches the container from the host
    with serve(c1, "tcp", 80):
        answer = ask(netns_host, ("127.0.0.1", 18080))[0]
        assert answer.endswith(" 80"), answer

    assert cni.check("ctr-one", c1_path).code == 0
    assert cni.check("ctr-two", c2_path).code == 0

    assert cni.delete("ctr-one", c1_path).code == 0
    assert "eth0" not in netns.exec_in(c1, "ip", "-o", "link").stdout
    assert ask(netns_host, ("127.0.0.1", 18080), wait=2)[0] in ("refused", "timeout")
    # DEL is idempotent: again, and without CNI_NETNS
    assert cni.delete("ctr-one", c1_path).code == 0
    assert cni.delete("ctr-one", "").code == 0
    # cnm's CHECK after DEL finds nothing: an error, not a success
    only_cnm = LibCni(dict(chain, plugins=[chain["plugins"][1]]), world.bin_dir, netns_host)
    assert host_veth not in netns.exec_in(netns_host, "ip", "-o", "link").stdout
    only_cnm.cache[("ctr-one", "eth0")] = added.out
    gone = only_cnm.check("ctr-one", c1_path)
    validate_error(gone.error, 999)
    assert "not attached" in gone.error["msg"]
    assert cni.delete("ctr-two", c2_path).code == 0
    assert cnm_state(world) == EMPTY


def test_version_old_result_format_and_dns(world, containers, netns_host):
    plugin = world.bin_dir / "cnm"
    out = exec_plugin(plugin, "VERSION", {"cniVersion": "0.4.0"}, host_netns=netns_host)
    assert out.code == 0
    assert out.out["cniVersion"] == "0.4.0"
    assert {"0.4.0", "1.0.0", "1.1.0"} <= set(out.out["supportedVersions"])

    cni = LibCni(conflist(world, "0.4.0"), world.bin_dir, netns_host)
    # containerd's CRI names namespaces /var/run/netns/cni-<uuid>
    name, _ = containers()
    path = f"/var/run/netns/{name}"
    added = cni.add("old", path, ifname="net1")
    assert added.code == 0, added
    validate_result(added.out, "0.4.0")
    host_end, container_end = added.out["interfaces"]
    assert host_end["name"].startswith("veth") and "sandbox" not in host_end
    assert container_end == {"name": "net1", "sandbox": path, "mac": container_end["mac"]}
    assert added.out["ips"][0]["version"] == "4"
    assert cni.check("old", path, ifname="net1").code == 0
    assert cni.delete("old", path, ifname="net1").code == 0


def test_gc_removes_only_this_networks_unlisted_attachments(world, containers, netns_host):
    cni = LibCni(conflist(world, "1.1.0"), world.bin_dir, netns_host)
    other = LibCni(conflist(world, "1.1.0", name="othernet"), world.bin_dir, netns_host)
    paths = {cid: containers()[1] for cid in ("keep", "stale", "elsewhere")}
    assert cni.add("keep", paths["keep"]).code == 0
    assert cni.add("stale", paths["stale"]).code == 0
    assert other.add("elsewhere", paths["elsewhere"]).code == 0
    before = cnm_state(world)
    assert len(before["sandboxes"]) == 3

    (gc,) = cni.gc([("keep", "eth0")])
    assert gc.code == 0 and gc.out is None, gc
    after = cnm_state(world)
    assert len(after["sandboxes"]) == 2 and len(after["endpoints"]) == 2
    assert not any(s.startswith("stale-") for s in after["sandboxes"])
    assert cni.check("keep", paths["keep"]).code == 0
    assert other.check("elsewhere", paths["elsewhere"]).code == 0

    assert cni.delete("keep", paths["keep"]).code == 0
    assert other.delete("elsewhere", paths["elsewhere"]).code == 0
    # the runtime's own DEL for the collected attachment still succeeds
    assert cni.delete("stale", paths["stale"]).code == 0
    assert cnm_state(world) == EMPTY


def test_status_and_controller_down(world, containers, netns_host):
    conf = conflist(world, "1.1.0")
    cni = LibCni(conf, world.bin_dir, netns_host)
    ok = cni.status()
    assert ok.code == 0 and ok.out is None, ok
    missing = LibCni(dict(conf, plugins=[dict(conf["plugins"][0], network="nope")]),
                     world.bin_dir, netns_host)  # fmt: skip
    validate_error(missing.status().error, 50)

    _, path = containers()
    assert cni.add("up", path).code == 0
    world.stop("controller")

    down = cni.status()
    validate_error(down.error, 50)
    assert "cannot reach the cnm controller" in down.error["msg"]
    _, path2 = containers()
    add = cni.add("while-down", path2)
    validate_error(add.error, 11)
    validate_error(cni.delete("up", path).error, 11)

    world.start_controller()
    # DEL after the failed ADD (as runtimes do), then the delayed DEL
    assert cni.delete("while-down", path2).code == 0
    assert cni.delete("up", path).code == 0
    assert cnm_state(world) == EMPTY


def _bad_cases(world: World, c_path: str) -> list[tuple[str, str, dict, object, int]]:
    """(id, command, env, stdin, expected code)"""
    good = {
        "cniVersion": "1.1.0",
        "name": "cninet",
        "type": "cnm",
        "network": "cninet",
        "controller": world.controller,
    }
    env = {"container_id": "bad1", "netns": c_path, "ifname": "eth0"}
    return [
        ("unknown-network", "ADD", env, dict(good, network="nosuchnet"), 7),
        ("malformed-stdin", "ADD", env, b'{"cniVersion": ', 6),
        ("stdin-not-object", "ADD", env, b"[1, 2]", 6),
        ("stdin-too-large", "ADD", env, b" " * ((1 << 20) + 10), 5),
        ("missing-containerid", "ADD", dict(env, container_id=""), good, 4),
        ("bad-containerid", "ADD", dict(env, container_id="-x/y"), good, 4),
        ("ifname-too-long", "ADD", dict(env, ifname="x" * 16), good, 4),
        ("ifname-with-slash", "ADD", dict(env, ifname="a/b"), good, 4),
        ("missing-netns", "ADD", dict(env, netns=""), good, 4),
        ("relative-netns", "ADD", dict(env, netns="run/netns/x"), good, 4),
        ("netns-does-not-exist", "ADD", dict(env, netns="/run/netns/cnm-no-such-ns"), good, 3),
        ("unsupported-version", "ADD", env, dict(good, cniVersion="2.0.0"), 1),
        ("gc-needs-1.1.0", "GC", {}, dict(good, cniVersion="1.0.0"), 1),
        ("ipam-section", "ADD", env, dict(good, ipam={"type": "host-local"}), 2),
        ("bad-controller", "ADD", env, dict(good, controller="nowhere"), 7),
        ("bad-port", "ADD", env,
         dict(good, runtimeConfig={"portMappings": [{"hostPort": 0, "containerPort": 80}]}), 7),
        ("bad-protocol", "ADD", env,
         dict(good, runtimeConfig={"portMappings": [
             {"hostPort": 8080, "containerPort": 80, "protocol": "icmp"}]}), 7),
        ("gc-without-list", "GC", {}, good, 7),
        ("check-without-prevresult", "CHECK", env, good, 7),
        ("bad-command", "FROB", env, good, 4),
    ]  # fmt: skip


def test_bad_input_is_a_cni_error_and_changes_nothing(world, containers, netns_host):
    _, c_path = containers()
    plugin = world.bin_dir / "cnm"
    before = snapshot(world.redis_url)
    for case, command, env, stdin, code in _bad_cases(world, c_path):
        out = exec_plugin(plugin, command, stdin, host_netns=netns_host, **env)
        assert out.code != 0 and out.out is not None, (case, out)
        assert out.out.get("code") == code, f"{case}: expected code {code}, got {out.out}"
        validate_error(out.out, code)
    assert snapshot(world.redis_url) == before


def test_duplicate_add_fails_and_keeps_the_first(world, containers, netns_host):
    cni = LibCni(conflist(world, "1.1.0"), world.bin_dir, netns_host)
    c1, path = containers()
    first = cni.add("dup", path)
    assert first.code == 0
    before = cnm_state(world)
    again = cni.add("dup", path)
    validate_error(again.error, 999)
    assert "already attached" in again.error["msg"]
    # the same interface name from another CNI network: the kernel refuses it
    other = LibCni(conflist(world, "1.1.0", name="othernet"), world.bin_dir, netns_host)
    clash = other.add("dup", path)
    assert clash.code != 0
    assert "already exists" in clash.error["msg"]
    # rolled back: same sandboxes, endpoints and addresses in use (the IPAM
    # cursor and the request-id records of the failed calls may differ)
    assert cnm_state(world) == before
    cni.cache[("dup", "eth0")] = first.out
    assert cni.check("dup", path).code == 0
    assert netns.ping(c1, first.out["ips"][0]["address"].split("/")[0])
    assert cni.delete("dup", path).code == 0


def test_endpoint_ifname_option_is_validated_and_unique_per_sandbox(world):
    """The endpoint option cnm-cni relies on, through the controller's API."""
    from clients.errors import AlreadyExistsError, InvalidArgumentError

    with Client(world.controller) as cnm:
        used = sum(p.used for p in cnm.list_pools())
        with pytest.raises(InvalidArgumentError, match="interface name"):
            cnm.create_endpoint("cninet", options={IFNAME_OPTION: "no/slash"})
        with pytest.raises(InvalidArgumentError, match="expected true or false"):
            cnm.create_endpoint("cninet", options={DEFAULT_ROUTE_OPTION: "maybe"})
        assert sum(p.used for p in cnm.list_pools()) == used
        sb = cnm.create_sandbox("ifnames")
        # an attachment without an interface (null driver) holds no name (a
        # sandbox of its own: one on a null network is on no other, as Docker's)
        cnm.create_network("nonet", driver="null")
        quiet = cnm.create_sandbox("ifnames-none")
        assert cnm.connect("nonet", quiet.id).interface_name == ""
        cnm.delete_sandbox(quiet.id)
        assert cnm.connect("cninet", sb.id).interface_name == "eth0"
        cnm.create_network("cninet2", subnets=[_ipam("10.95.0.0/24")])
        second = cnm.create_endpoint("cninet2", options={IFNAME_OPTION: "eth0"})
        with pytest.raises(AlreadyExistsError) as err:
            cnm.join(second.id, sb.id)
        assert err.value.reason == "INTERFACE_NAME_TAKEN", err.value
        assert "eth0" in err.value.message
        cnm.delete_endpoint(second.id)
        cnm.delete_sandbox(sb.id)
        cnm.delete_network("cninet2")
        cnm.delete_network("nonet")
        assert cnm_state(world) == EMPTY


def test_second_network_without_default_route(world, containers, netns_host):
    """One container on two cnm networks through two CNI networks: the second,
    configured `defaultRoute: false`, adds its subnet but not a default route."""
    with Client(world.controller) as cnm:
        cnm.create_network("cninet2", subnets=[_ipam("10.95.0.0/24")])
    first = LibCni(conflist(world, "1.1.0"), world.bin_dir, netns_host)
    plugin = dict(conflist(world, "1.1.0")["plugins"][0], network="cninet2", defaultRoute=False)
    second = LibCni({"cniVersion": "1.1.0", "name": "second", "plugins": [plugin]},
                    world.bin_dir, netns_host)  # fmt: skip
    c, path = containers()
    assert first.add("multi", path).code == 0
    added = second.add("multi", path, ifname="net1")
    assert added.code == 0, added
    validate_result(added.out, "1.1.0")
    assert added.out["routes"] == [] and "gateway" not in added.out["ips"][0]
    routes = netns.exec_in(c, "ip", "-4", "route").stdout
    assert "default via 10.93.0.1 dev eth0" in routes, routes
    assert "10.95.0.0/24 dev net1" in routes, routes
    assert second.check("multi", path, ifname="net1").code == 0
    assert second.delete("multi", path, ifname="net1").code == 0
    assert first.delete("multi", path).code == 0
    with Client(world.controller) as cnm:
        cnm.delete_network("cninet2")
    assert cnm_state(world) == EMPTY
