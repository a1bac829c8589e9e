"""The driver service as a process: capabilities, null and host drivers, host
registration and heartbeat, sandbox files as peers come and go, the kernel's view
of a sandbox, adopted namespaces, and the refusal of a TCP listener without mTLS."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import grpc
import pytest
import redis
from driver_world import T, hosts_text, links, netns_name, network_request, ping, shared_host
from grpc_health.v1 import health_pb2, health_pb2_grpc

from cnm.driver.v1 import driver_pb2 as pb
from cnm.driver.v1 import driver_pb2_grpc
from cnm.types.v1 import types_pb2 as tpb
from harness import kernel_snapshot, netns
from harness.stack import BIN, short_tmp
from harness.wait import eventually
from services.ids import new_id

# The overlay driver's capability error on a host without --advertise-addr.
NO_VTEP = "no VTEP address: start the driver service with --advertise-addr"


@pytest.fixture(scope="module")
def world(redis_server, netns_prefix):
    with shared_host(redis_server, netns_prefix) as h:
        yield h


@pytest.fixture
def host(world):
    yield world
    world.reset_or_recover()


def test_capabilities_list_the_local_drivers_and_the_overlay(host):
    caps = host.stub.GetCapabilities(pb.GetCapabilitiesRequest(), timeout=T).capabilities
    assert {(c.name, c.scope, c.error) for c in caps} == {
        ("bridge", tpb.SCOPE_LOCAL, ""),
        ("null", tpb.SCOPE_LOCAL, ""),
        ("host", tpb.SCOPE_LOCAL, ""),
        ("macvlan", tpb.SCOPE_LOCAL, ""),
        # This host has no --advertise-addr: the overlay says why it cannot work.
        ("overlay", tpb.SCOPE_GLOBAL, NO_VTEP),
    }
    one = host.stub.GetCapabilities(pb.GetCapabilitiesRequest(driver="null"), timeout=T)
    assert [c.name for c in one.capabilities] == ["null"]


def test_host_registers_and_heartbeats(host):
    client = redis.Redis.from_url(host.redis_url, decode_responses=True)
    try:
        assert "h1" in client.smembers("cnm:hosts")
        first = client.hgetall("cnm:host:h1")
        assert first["id"] == "h1" and first["address"] == host.address
        assert float(first["ttl"]) == 10.0
        assert json.loads(first["drivers"]) == [
            {"name": "bridge", "scope": "local", "error": ""},
            {"name": "host", "scope": "local", "error": ""},
            {"name": "macvlan", "scope": "local", "error": ""},
            {"name": "null", "scope": "local", "error": ""},
            {"name": "overlay", "scope": "global", "error": NO_VTEP},
        ]
        assert time.time() - float(first["last_heartbeat"]) <= float(first["ttl"])
        # The heartbeat (every 2 s) moves last_heartbeat on.
        assert eventually(
            lambda: (
                float(client.hget("cnm:host:h1", "last_heartbeat")) > float(first["last_heartbeat"])
            ),
            timeout=15,
        ), "no heartbeat after the first"
    finally:
        client.close()


def test_null_driver_sandbox_has_loopback_only(host):
    nid = host.network(subnet="", driver="null", name="none")
    sb = host.sandbox("quiet")
    eid = host.endpoint(nid)
    res = host.join(nid, eid, sb.sandbox_id)
    assert res.interface_name == "" and res.gateway == ""
    assert links(netns_name(sb)) == ["lo"]
    assert ping(sb, "127.0.0.1")
    view = host.stub.GetSandbox(pb.GetSandboxRequest(sandbox_id=sb.sandbox_id), timeout=T)
    assert [i.name for i in view.interfaces] == ["lo"]
    host.leave(nid, eid, sb.sandbox_id)


def _same_netns(a: str, b: str) -> bool:
    sa, sb = os.stat(a), os.stat(b)
    return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)


def test_host_network_sandbox_is_the_hosts_own_namespace(host):
    """Docker's --network host: the sandbox's key names the namespace the
    driver serves (here the test's host namespace); a process started there
    sees the host's interfaces and reaches its addresses; nothing is created,
    and neither Leave nor DeleteSandbox touches the host's namespace (a kill -9:
    test_driver_recovery.py)."""
    host.host_exec("ip", "link", "add", "hn0", "type", "bridge")
    try:
        host.host_exec("ip", "addr", "add", "10.97.0.1/24", "dev", "hn0")
        host.host_exec("ip", "link", "set", "hn0", "up")
        before = links(host.host_ns)
        host_path = f"/run/netns/{host.host_ns}"
        nid = host.network(subnet="", driver="host", name="host")
        sb = host.sandbox("hostnet", host_network=True)
        assert sb.host_network and sb.key == host_path and _same_netns(sb.key, host_path)
        eid = host.endpoint(nid)
        assert host.join(nid, eid, sb.sandbox_id).interface_name == ""
        assert links(host.host_ns) == before

        # A process in the sandbox's namespace: the host's interfaces and addresses.
        inside = subprocess.run(
            ["nsenter", f"--net={sb.key}", "ip", "-o", "-4", "addr", "show", "dev", "hn0"],
            capture_output=True, text=True, check=True, timeout=T,
        ).stdout  # fmt: skip
        assert "10.97.0.1/24" in inside
        res = subprocess.run(
            ["nsenter", f"--net={sb.key}", "ping", "-c", "1", "-W", "2", "-q", "10.97.0.1"],
            capture_output=True, timeout=T,
        )  # fmt: skip
        assert res.returncode == 0, res
        view = host.stub.GetSandbox(pb.GetSandboxRequest(sandbox_id=sb.sandbox_id), timeout=T)
        assert "hn0" in [i.name for i in view.interfaces] and view.sandbox.host_network
        # The host's files, copied under the driver's state directory (never /etc).
        assert Path("/etc/hosts").read_text().strip() in Path(sb.hosts_path).read_text()
        assert not sb.hosts_path.startswith("/etc/")

        host.leave(nid, eid, sb.sandbox_id)
        host.stub.DeleteSandbox(pb.DeleteSandboxRequest(sandbox_id=sb.sandbox_id), timeout=T)
        host.made_sandboxes.remove(sb.sandbox_id)
        assert os.path.exists(host_path) and links(host.host_ns) == before
        assert host.host_exec("ip", "-o", "addr", "show", "dev", "hn0").stdout.count("10.97.0.1")
    finally:
        host.host_exec("ip", "link", "delete", "hn0", check=False)


def test_host_network_is_refused_where_it_would_touch_the_host(host):
    hostnet = host.network(subnet="", driver="host", name="host")
    bridged = host.network("10.96.0.0/24", name="br")
    hosted = host.sandbox("hosted", host_network=True)
    own = host.sandbox("own")
    # Nothing is plumbed into the host's namespace; `host` gives a private
    # namespace nothing: both refused, as Docker refuses them.
    for nid, sb in ((bridged, hosted), (hostnet, own)):
        eid = host.endpoint(nid, "10.96.0.2/24" if nid == bridged else "")
        with pytest.raises(grpc.RpcError) as exc:
            host.join(nid, eid, sb.sandbox_id)
        assert exc.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "connected to host network" in exc.value.details()
    for kw in ({"external_key": f"/run/netns/{host.host_ns}"}, {"runtime_moves_interfaces": True}):
        with pytest.raises(grpc.RpcError) as exc:
            host.sandbox("bad", host_network=True, **kw)
        assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "host_network" in exc.value.details()
        host.made_sandboxes.pop()


def test_legacy_hosts_files_follow_peers_as_they_join_and_leave(host):
    nid = host.network("10.61.0.0/24", name="mesh", options={"cnm.network.legacy_hosts": "1"})
    a, _ = host.attach(
        nid,
        "10.61.0.2/24",
        "a",
        extra_hosts=[tpb.ExtraHost(hostname="db.example", address="10.9.9.9")],
    )
    sb_b = host.sandbox("b", domainname="corp.example")
    eid_b = host.endpoint(nid, "10.61.0.3/24", name="b", aliases=["api", "api.v2"])
    hosts_a = Path(a.hosts_path)
    assert "10.61.0.3" not in hosts_a.read_text()
    inode = hosts_a.stat().st_ino

    host.join(nid, eid_b, sb_b.sandbox_id)

    text = hosts_text(a, has=("10.61.0.3\tb b.mesh api api.v2",))
    assert "10.9.9.9\tdb.example" in text
    assert "127.0.0.1\tlocalhost" in text and "::1\tlocalhost ip6-localhost ip6-loopback" in text
    assert hosts_a.stat().st_ino != inode  # replaced by rename, never rewritten in place
    own_b = Path(sb_b.hosts_path).read_text().splitlines()[1]
    assert own_b == "10.61.0.3\tb.corp.example b"

    host.leave(nid, eid_b, sb_b.sandbox_id)
    hosts_text(a, lacks=("10.61.0.3",))


def test_resolv_conf_uses_sandbox_dns_through_the_embedded_resolver(host):
    dns = tpb.DnsConfig(
        servers=["10.0.0.53", "fd00::53"], search=["corp.example"], options=["ndots:2"]
    )
    nid = host.network("10.62.0.0/24", subnet6="fd00:62::/64")
    v4_only, _ = host.attach(nid, "10.62.0.2/24", "v4", dns=dns)
    dual, _ = host.attach(nid, "10.62.0.3/24", "dual", address6="fd00:62::3/64", dns=dns)
    # Joined to a bridge network: the embedded resolver, forwarding to the sandbox's servers.
    for sb in (v4_only, dual):
        lines = Path(sb.resolv_conf_path).read_text().splitlines()
        assert [ln for ln in lines if ln.startswith("nameserver")] == ["nameserver 127.0.0.11"]
        assert "# ExtServers: [10.0.0.53 fd00::53]" in lines
        assert "search corp.example" in lines and "options ndots:2" in lines
    # No network yet: the host's servers, filtered as Docker does.
    plain = host.sandbox("plain")
    for line in Path(plain.resolv_conf_path).read_text().splitlines():
        if line.startswith("nameserver"):
            assert not line.split()[1].startswith(("127.", "::1"))


def test_get_sandbox_reports_the_kernel_view(host):
    nid = host.network("10.63.0.0/24")
    sb, _ = host.attach(nid, "10.63.0.2/24", "seen")
    netns.exec_in(netns_name(sb), "ip", "route", "add", "192.0.2.0/24", "via", "10.63.0.1")
    view = host.stub.GetSandbox(pb.GetSandboxRequest(sandbox_id=sb.sandbox_id), timeout=T)
    assert view.sandbox == sb
    assert {i.name for i in view.interfaces} == {"lo", "eth0"}
    routes = {(r.destination, r.gateway, r.interface) for r in view.routes}
    assert ("0.0.0.0/0", "10.63.0.1", "eth0") in routes
    assert ("192.0.2.0/24", "10.63.0.1", "eth0") in routes  # made behind the driver's back


def test_adopted_namespace_is_used_and_left_to_its_owner(host):
    owned = f"cnmtest-{kernel_snapshot.TEST_TAG}-own{new_id()[:6]}"
    netns.create(owned)
    try:
        nid = host.network("10.64.0.0/24")
        sb = host.stub.CreateSandbox(
            pb.CreateSandboxRequest(
                sandbox_id=new_id(), name="adopted", external_key=f"/run/netns/{owned}"
            ),
            timeout=T,
        )
        assert sb.key == f"/run/netns/{owned}"
        eid = host.endpoint(nid, "10.64.0.2/24")
        host.join(nid, eid, sb.sandbox_id)
        assert "eth0" in links(owned) and netns.ping(owned, "10.64.0.1")
        host.stub.DeleteSandbox(pb.DeleteSandboxRequest(sandbox_id=sb.sandbox_id), timeout=T)
        assert links(owned) == ["lo"]
        assert Path(f"/run/netns/{owned}").exists()
    finally:
        netns.delete(owned)


def test_tcp_listener_without_mutual_tls_is_refused_in_one_line(redis_url):
    res = subprocess.run(
        [
            str(BIN / "cnm-driver"),
            "--listen",
            "127.0.0.1:0",
            "--redis-url",
            redis_url,
            "--host-id",
            "h9",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert res.returncode == 2
    assert res.stderr.count("\n") == 1 and "mutual TLS" in res.stderr


def test_without_redis_health_is_not_serving_and_calls_are_unavailable(
    spawn, netns_host, netns_prefix
):
    run_dir = short_tmp("cnmnoredis")
    address = f"unix://{run_dir}/driver.sock"
    try:
        spawn(
            ["nsenter", f"--net=/run/netns/{netns_host}", "--", str(BIN / "cnm-driver"),
             "--listen", address, "--redis-url", f"unix://{run_dir}/no-redis.sock",
             "--host-id", "h1", "--state-dir", str(run_dir / "state")],
            env={"CNM_NETNS_PREFIX": netns_prefix},
        )  # fmt: skip
        with grpc.insecure_channel(address) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            check = health_pb2.HealthCheckRequest(service="cnm.driver.v1.Driver")
            grpc.channel_ready_future(channel).result(timeout=15)
            assert (
                health.Check(check, timeout=T).status == health_pb2.HealthCheckResponse.NOT_SERVING
            )
            stub = driver_pb2_grpc.DriverStub(channel)
            with pytest.raises(grpc.RpcError) as err:
                stub.CreateSandbox(pb.CreateSandboxRequest(sandbox_id=new_id()), timeout=T)
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE
            assert "reconciling" in err.value.details()
    finally:
        spawn.stop_all()
        shutil.rmtree(run_dir, ignore_errors=True)


@pytest.mark.parametrize(
    ("driver", "options", "key"),
    [
        ("bridge", {"com.docker.network.driver.mut": "1400"}, "com.docker.network.driver.mut"),
        ("bridge", {"parent": "eth0"}, "parent"),  # macvlan's key, not the bridge's
        ("macvlan", {"parent": "lo0", "macvlan_mod": "bridge"}, "macvlan_mod"),
        ("null", {"foo": "1"}, "foo"),
        ("host", {"cnm.network.legacy_hostz": "1"}, "cnm.network.legacy_hostz"),
    ],
)
def test_unknown_network_option_is_refused_naming_it(host, driver, options, key):
    nid = new_id()
    with pytest.raises(grpc.RpcError) as exc:
        host.stub.CreateNetwork(
            network_request(nid, "", "", options, False, "opt", driver), timeout=T
        )
    assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert f"unknown network option {key!r} for the {driver} driver" in exc.value.details()
    assert nid not in host.records()["networks"]


def test_unknown_endpoint_and_join_options_are_refused_naming_them(host):
    nid = host.network("10.95.0.0/24", options={"com.docker.network.driver.mtu": "1400"})
    with pytest.raises(grpc.RpcError) as exc:
        host.endpoint(nid, "10.95.0.2/24", options={"com.cnm.endpoint.ifnam": "x0"})
    assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "unknown endpoint option 'com.cnm.endpoint.ifnam'" in exc.value.details()
    host.made_endpoints.pop()
    sb = host.sandbox("opts")
    eid = host.endpoint(nid, "10.95.0.2/24", options={"com.cnm.endpoint.ifname": "x0"})
    with pytest.raises(grpc.RpcError) as exc:
        host.stub.Join(
            pb.JoinRequest(
                network_id=nid, endpoint_id=eid, sandbox_id=sb.sandbox_id, options={"k": "v"}
            ),
            timeout=T,
        )
    assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "unknown join option 'k' for the bridge driver (known: none)" in exc.value.details()
    assert links(netns_name(sb)) == ["lo"]
    assert host.join(nid, eid, sb.sandbox_id).interface_name == "x0"
