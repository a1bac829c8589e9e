"""Sandboxes in-process (Manager + real namespaces + real Redis): the namespace, its
hosts/resolv.conf files, adopted namespaces, and files following the records.

No link is created here (only the null driver is used), so nothing touches the
root namespace's interfaces; the namespaces carry this run's tagged prefix.
"""

from __future__ import annotations

import dataclasses
import os
import stat
import uuid
from pathlib import Path

import pytest

from driver_service.drivers.null import NullDriver
from driver_service.manager import Manager
from driver_service.models import (
    JOINED,
    Attachment,
    DnsConfig,
    EndpointRecord,
    EndpointSpec,
    ExtraHost,
    NetworkRecord,
    NetworkSpec,
    SandboxSpec,
)
from driver_service.registry import Registry
from driver_service.sandbox import Sandboxes
from driver_service.sandbox_keys import SandboxKeys
from driver_service.state import State
from harness import kernel_snapshot, netns
from services.errors import CnmError, InvalidArgument, PermissionDenied
from services.ids import new_id
from services.store import Store


@pytest.fixture
def manager(redis_url, netns_prefix, tmp_path):
    store = Store(redis_url)
    state = State(store, "h1")
    sandboxes = Sandboxes(state, state_dir=str(tmp_path), netns_prefix=netns_prefix)
    resolv = tmp_path / "host-resolv.conf"
    resolv.write_text("nameserver 127.0.0.53\nnameserver 10.1.1.1\nsearch lan\n")
    sandboxes.host_resolv_conf = str(resolv)
    m = Manager(state, Registry([NullDriver()]), sandboxes)
    yield m
    for sb in state.sandboxes():
        m.delete_sandbox(sb.id)
    store.close()


def ns_names(prefix: str) -> list[str]:
    return [
        line.split()[0]
        for line in netns.run("ip", "netns", "list").stdout.splitlines()
        if line.startswith(prefix)
    ]


def test_sandbox_gets_a_named_namespace_and_its_two_files(manager, netns_prefix):
    sb = manager.create_sandbox(
        SandboxSpec(new_id(), name="web", hostname="web", domainname="corp.example",
                    extra_hosts=(ExtraHost("db", "10.0.0.9"),))
    )  # fmt: skip
    name = Path(sb.key).name
    assert name == f"{netns_prefix}{sb.id[:12]}" and name in ns_names(netns_prefix)
    assert "state UNKNOWN" in netns.run("ip", "-n", name, "link", "show", "lo").stdout
    hosts, resolv = Path(sb.hosts_path), Path(sb.resolv_conf_path)
    assert hosts.parent == Path(manager.sandboxes.dir) / sb.id
    assert stat.S_IMODE(hosts.stat().st_mode) == 0o644
    assert "10.0.0.9\tdb" in hosts.read_text() and "127.0.0.1\tlocalhost" in hosts.read_text()
    lines = resolv.read_text().splitlines()
    assert "nameserver 10.1.1.1" in lines and "nameserver 127.0.0.53" not in lines

    manager.delete_sandbox(sb.id)
    assert name not in ns_names(netns_prefix) and not hosts.parent.exists()
    manager.delete_sandbox(sb.id)  # idempotent


def test_adopted_namespace_is_kept_on_delete(manager):
    owned = f"cnmtest-{kernel_snapshot.TEST_TAG}-{uuid.uuid4().hex[:8]}"
    netns.create(owned)
    try:
        sb = manager.create_sandbox(SandboxSpec(new_id(), external_key=f"/run/netns/{owned}"))
        assert sb.key == f"/run/netns/{owned}" and sb.netns_name == ""
        manager.delete_sandbox(sb.id)
        assert owned in ns_names("cnmtest-") and not Path(sb.hosts_path).exists()
    finally:
        netns.delete(owned)


# The manager runs in this process: its host namespace is this process's.
HOST_NETNS = ("PermissionDenied", "HOST_NETNS")
NOT_ALLOWED = ("InvalidArgument", "SANDBOX_KEY_NOT_ALLOWED")


@pytest.mark.parametrize(
    "key, error",
    [
        pytest.param("REGULAR_FILE", NOT_ALLOWED, id="regular-file-elsewhere"),
        pytest.param(
            "RUN_NETNS_FILE", ("InvalidArgument", "NOT_A_NETNS"), id="plain-file-in-run-netns"
        ),
        pytest.param("/proc/self/ns/uts", NOT_ALLOWED, id="uts-namespace"),
        pytest.param(
            "/run/netns/cnm-no-such-namespace", ("NotFound", "NETNS_NOT_FOUND"), id="missing"
        ),
        pytest.param("/proc/self/ns/net", NOT_ALLOWED, id="proc-self"),
        pytest.param("/proc/thread-self/ns/net", NOT_ALLOWED, id="proc-thread-self"),
        pytest.param("/run/netns/../../proc/1/ns/net", NOT_ALLOWED, id="dot-dot"),
        pytest.param("/etc/../run/netns/x", NOT_ALLOWED, id="dot-dot-into-run-netns"),
        pytest.param(f"/proc/{os.getpid()}/ns/net", HOST_NETNS, id="the-driver-itself"),
        pytest.param("HOST_BIND_MOUNT", HOST_NETNS, id="host-bind-mounted-in-run-netns"),
    ],
)
def test_bad_external_key_leaves_no_record_namespace_or_file(
    manager, tmp_path, netns_prefix, key, error
):
    made = f"/run/netns/cnmtest-{kernel_snapshot.TEST_TAG}-{uuid.uuid4().hex[:6]}"
    if key == "REGULAR_FILE":
        key = str(tmp_path / "plain")
        Path(key).write_text("not a namespace")
    elif key == "RUN_NETNS_FILE":
        key = made
        Path(key).write_text("")
    elif key == "HOST_BIND_MOUNT":
        key = made
        Path(key).write_text("")
        netns.run("mount", "--bind", "/proc/self/ns/net", key)
    before = ns_names(netns_prefix)
    try:
        with pytest.raises(CnmError) as info:
            manager.create_sandbox(SandboxSpec(new_id(), external_key=key))
        assert (type(info.value).__name__, info.value.reason) == error, info.value
    finally:
        if key == made:
            netns.run("umount", made, check=False)
            Path(made).unlink()
    assert manager.state.sandboxes() == [] and ns_names(netns_prefix) == before
    assert not manager.sandboxes.dir.exists()


def test_runtime_directories_named_in_config_are_allowed(tmp_path, netns_host):
    """A runtime keeping its namespaces elsewhere (Docker: /var/run/docker/netns)."""
    runtime = tmp_path / "runtime-netns"
    runtime.mkdir()
    key = runtime / "c1"
    key.write_text("")
    netns.run("mount", "--bind", f"/run/netns/{netns_host}", str(key))
    try:
        with pytest.raises(InvalidArgument, match="not allowed"):
            SandboxKeys().check(str(key))
        assert SandboxKeys([str(runtime)]).check(str(key)) == str(key)
    finally:
        netns.run("umount", str(key), check=False)


@pytest.mark.parametrize("legacy", [True, False], ids=["legacy-hosts", "own-entries-only"])
def test_files_follow_the_records(manager, legacy):
    """hosts is rendered from the records: own line from the first joined endpoint,
    a line per peer of each network that asks for legacy hosts files (none
    otherwise: peers are found through cnm-dns), IPv6 nameservers only with an
    IPv6 address (the null driver's sandboxes do not use the embedded resolver)."""
    resolv = Path(manager.sandboxes.host_resolv_conf)
    resolv.write_text("nameserver 10.1.1.1\nnameserver fd00::1\n")
    me = manager.create_sandbox(SandboxSpec(new_id(), name="me", hostname="me", dns=DnsConfig()))
    peer = manager.create_sandbox(SandboxSpec(new_id(), name="peer"))
    nid = new_id()
    options = {"cnm.network.legacy_hosts": "true"} if legacy else {}
    manager.state.put_network(
        NetworkRecord(NetworkSpec(nid, "blue", "null", options=options), "ready")
    )

    def joined(sandbox, address, address6="", name=""):
        ep = EndpointRecord(
            EndpointSpec(nid, new_id(), address=address, address_ipv6=address6, name=name),
            attachment=Attachment(sandbox.id, JOINED, seq=1),
        )
        manager.state.put_endpoint(ep)
        return ep

    mine = joined(me, "10.0.0.2/24")
    theirs = joined(peer, "10.0.0.3/24", "fd00::3/64", name="api")
    manager.sandboxes.refresh([me.id, peer.id], now=[me.id])
    assert manager.sandboxes.flush()
    text = Path(me.hosts_path).read_text()
    assert text.splitlines()[1] == "10.0.0.2\tme"
    assert ("10.0.0.3\tapi api.blue" in text and "fd00::3\tapi api.blue" in text) is legacy
    assert ("10.0.0.3" in text) is legacy
    assert "fd00::1" not in Path(me.resolv_conf_path).read_text()
    assert "nameserver fd00::1" in Path(peer.resolv_conf_path).read_text()

    manager.state.put_endpoint(dataclasses.replace(theirs, attachment=None))
    manager.sandboxes.refresh([me.id], now=[me.id])
    assert "api" not in Path(me.hosts_path).read_text()
    for ep in (mine, theirs):
        manager.state.drop_endpoint(ep.id)
    manager.state.drop_network(nid)


def test_join_refuses_an_external_key_that_has_become_the_host_namespace(manager, netns_host):
    """The key is checked again at Join: a path (a /proc/PID whose process was
    replaced, a remounted file) may name the host's namespace by then."""
    key = f"/run/netns/cnmtest-{kernel_snapshot.TEST_TAG}-{uuid.uuid4().hex[:6]}"
    Path(key).write_text("")
    netns.run("mount", "--bind", f"/run/netns/{netns_host}", key)
    try:
        sb = manager.create_sandbox(SandboxSpec(new_id(), external_key=key))
        nid, eid = new_id(), new_id()
        manager.create_network(NetworkSpec(nid, "blue", "null"))
        manager.create_endpoint(EndpointSpec(nid, eid))
        netns.run("umount", key)
        netns.run("mount", "--bind", "/proc/self/ns/net", key)
        with pytest.raises(PermissionDenied, match="host's own network namespace"):
            manager.join(nid, eid, sb.id)
        assert manager.state.endpoint(eid).attachment is None
        manager.delete_endpoint(nid, eid)
        manager.delete_network(nid)
    finally:
        netns.run("umount", key, check=False)
        Path(key).unlink()
