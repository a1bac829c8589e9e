"""Crashes, restarts, namespaces deleted behind the driver's back, orphans, --cleanup.

Each test has its own host and driver: they kill it, restart it or wipe it.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path

import grpc
import pytest
import redis
from driver_world import DriverHost, T, driver_host, hosts_text, links, netns_name, ping

from cnm.driver.v1 import driver_pb2 as pb
from harness import netns
from harness.wait import eventually
from services.ids import new_id


@pytest.fixture
def host(spawn, redis_url, netns_prefix):
    """A host of its own; each test starts its driver (some with a crash point set)."""
    with driver_host(spawn, redis_url, netns_prefix, start=False) as h:
        yield h


def host_links(host: DriverHost) -> set[str]:
    return set(links(host.host_ns))


def test_kill9_in_the_middle_of_a_join_then_restart_undoes_it_and_a_fresh_join_works(host):
    host.start(env={"CNM_TEST_CRASH_AT": "after_veth"})
    nid = host.network("10.40.0.0/24")
    sb = host.sandbox("victim")
    eid = host.endpoint(nid, "10.40.0.2/24")
    with pytest.raises(grpc.RpcError) as err:
        host.join(nid, eid, sb.sandbox_id)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    assert host.proc.wait(10) == 137
    veth = f"veth{eid[:11]}"
    # The crash left the veth made and the record saying "joining".
    assert veth in host_links(host) and "eth0" in links(netns_name(sb))
    rec = json.loads(redis.Redis.from_url(host.redis_url).get(f"cnm:driver:h1:ep:{eid}"))
    assert rec["attachment"]["state"] == "joining"

    host.start()

    # Undone: no half-plumbed interface on either side (tombstones are reaped in the background).
    assert eventually(
        lambda: (
            veth not in host_links(host)
            and not any(n.startswith("cnmgc") for n in host_links(host))
        )
    )
    assert eventually(lambda: links(netns_name(sb)) == ["lo"])
    res = host.join(nid, eid, sb.sandbox_id)
    assert res.interface_name == "eth0" and res.gateway == "10.40.0.1"
    assert ping(sb, "10.40.0.1")
    assert host_links(host) == {"lo", f"br-{nid[:12]}", veth}
    host.reset()


def test_restart_after_kill9_keeps_joined_sandboxes_working_and_recreates_a_lost_bridge(host):
    host.start()
    # Peers in every hosts file (the legacy option): the restart must restore them.
    nid = host.network("10.41.0.0/24", name="keep", options={"cnm.network.legacy_hosts": "true"})
    a, _ = host.attach(nid, "10.41.0.2/24", "a")
    b, _ = host.attach(nid, "10.41.0.3/24", "b")
    hosts_before = hosts_text(a, has=("10.41.0.3\tb b.keep",))
    host.kill9()
    # While the driver is down, someone deletes the bridge: the sandboxes are cut off.
    host.host_exec("ip", "link", "delete", f"br-{nid[:12]}")
    host.start()
    assert ping(a, "10.41.0.3") and ping(b, "10.41.0.2") and ping(a, "10.41.0.1")
    assert Path(a.hosts_path).read_text() == hosts_before
    c, _ = host.attach(nid, "10.41.0.4/24", "c")
    assert ping(c, "10.41.0.2")
    hosts_text(a, has=("10.41.0.4\tc c.keep",))
    host.reset()


def test_leave_and_delete_sandbox_succeed_when_the_namespace_was_deleted_by_someone_else(host):
    host.start()
    nid = host.network("10.42.0.0/24")
    sb, eid = host.attach(nid, "10.42.0.2/24", "gone")
    sb2, eid2 = host.attach(nid, "10.42.0.3/24", "gone2")
    netns.delete(netns_name(sb))
    netns.delete(netns_name(sb2))

    host.leave(nid, eid, sb.sandbox_id)
    host.stub.DeleteSandbox(pb.DeleteSandboxRequest(sandbox_id=sb.sandbox_id), timeout=T)
    # Without a Leave first: DeleteSandbox leaves its endpoints itself.
    host.stub.DeleteSandbox(pb.DeleteSandboxRequest(sandbox_id=sb2.sandbox_id), timeout=T)

    assert not Path(sb.hosts_path).parent.exists() and not Path(sb2.hosts_path).parent.exists()
    assert eventually(lambda: host_links(host) == {"lo", f"br-{nid[:12]}"})
    for e in (eid, eid2):
        rec = json.loads(redis.Redis.from_url(host.redis_url).get(f"cnm:driver:h1:ep:{e}"))
        assert rec["attachment"] is None
    host.made_sandboxes.clear()
    host.reset()


def test_restart_removes_orphans_and_leaves_endpoints_of_vanished_sandboxes(host):
    host.start()
    nid = host.network("10.43.0.0/24")
    sb, eid = host.attach(nid, "10.43.0.2/24", "orphaned")
    host.stop()
    # While the driver is down: its sandbox's namespace is deleted, and things carrying
    # cnm's marks appear that no record knows.
    netns.delete(netns_name(sb))
    stray_id = new_id()
    host.host_exec("ip", "link", "add", "vethstray0", "type", "veth", "peer", "name", "vethstray1")
    host.host_exec("ip", "link", "set", "vethstray0", "alias", f"cnm:ep:{stray_id}")
    host.host_exec("ip", "link", "add", "brstray", "type", "bridge")
    host.host_exec("ip", "link", "set", "brstray", "alias", f"cnm:net:{stray_id}")
    host.host_exec("ip", "link", "add", "userbr", "type", "bridge")  # not cnm's: kept
    # A crash between making a namespace and recording it leaves the driver's mark.
    stray_ns = f"{host.netns_prefix}{stray_id[:12]}"
    netns.create(stray_ns)
    (host.state_dir / "netns").mkdir(exist_ok=True)
    (host.state_dir / "netns" / stray_ns).write_text("")
    not_ours = f"{host.netns_prefix}debug-{stray_id[:6]}"
    netns.create(not_ours)
    # cnm's shape, but no mark: another cnm instance's sandbox on this machine.
    foreign = f"{host.netns_prefix}{new_id()[:12]}"
    netns.create(foreign)
    stray_dir = host.state_dir / "sandboxes" / stray_id
    stray_dir.mkdir(parents=True)
    try:
        host.start()
        assert eventually(lambda: host_links(host) == {"lo", f"br-{nid[:12]}", "userbr"})
        names = netns.run("ip", "netns", "list").stdout
        assert stray_ns not in names and not_ours in names and foreign in names
        assert not stray_dir.exists()
        assert not (host.state_dir / "netns" / stray_ns).exists()
        rec = json.loads(redis.Redis.from_url(host.redis_url).get(f"cnm:driver:h1:ep:{eid}"))
        assert rec["attachment"] is None
    finally:
        for name in (not_ours, stray_ns, foreign):
            netns.delete(name)
    host.reset()


def test_cleanup_removes_everything_cnm_made_on_the_host(host):
    host.start()
    nid = host.network("10.44.0.0/24", options={"com.docker.network.bridge.name": "cnmclean0"})
    sb, _ = host.attach(nid, "10.44.0.2/24", "x")
    host.proc.send_signal(signal.SIGTERM)
    host.proc.wait(10)

    res = host.cleanup()

    assert res.returncode == 0, res.stderr
    assert host_links(host) == {"lo"}
    assert not Path(sb.key).exists() and not (host.state_dir / "sandboxes").exists()
    client = redis.Redis.from_url(host.redis_url)
    assert list(client.scan_iter("cnm:driver:h1:*")) == []
    assert host.host_exec("nft", "list", "tables").stdout.strip() == ""


def test_kill9_and_restart_keep_a_host_network_sandbox_and_the_hosts_namespace(host):
    host.start()
    host_path = f"/run/netns/{host.host_ns}"
    nid = host.network(subnet="", driver="host", name="host")
    sb = host.sandbox("hosted", host_network=True)
    eid = host.endpoint(nid)
    host.join(nid, eid, sb.sandbox_id)
    before = host_links(host)
    host.kill9()
    host.start()
    view = host.stub.GetSandbox(pb.GetSandboxRequest(sandbox_id=sb.sandbox_id), timeout=T)
    assert view.sandbox.key == host_path and view.sandbox.host_network
    assert Path(host_path).exists() and host_links(host) == before
    host.stub.DeleteSandbox(pb.DeleteSandboxRequest(sandbox_id=sb.sandbox_id), timeout=T)
    assert Path(host_path).exists() and host_links(host) == before
    assert not Path(sb.hosts_path).exists()
