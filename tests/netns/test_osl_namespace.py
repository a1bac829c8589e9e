"""osl namespaces, external keys, namespace entry and sysctls, on real namespaces."""

from __future__ import annotations

import os
import uuid
from contextlib import suppress
from pathlib import Path

import pytest

from driver_service import osl
from driver_service.osl import batch
from driver_service.osl.rtnl import raw_rtnl, rtnl
from harness import netns as hn
from services.errors import AlreadyExists, InvalidArgument, NotFound


def _name() -> str:
    return f"cnmt-osl-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def fresh_name():
    """A unique namespace name; whatever the test made under it is removed after."""
    name = _name()
    try:
        yield name
    finally:
        osl.delete_namespace(name)


def test_create_namespace_is_usable_by_ip_netns_exec_with_lo_up(fresh_name):
    path = osl.create_namespace(fresh_name)

    assert path == f"/run/netns/{fresh_name}"
    assert osl.namespace_exists(fresh_name)
    assert fresh_name in hn.run("ip", "netns", "list").stdout
    assert hn.ping(fresh_name, "127.0.0.1")
    links = osl.list_links(netns=fresh_name)
    assert [(li.name, li.up) for li in links] == [("lo", True)]


def test_create_existing_namespace_raises_already_exists(fresh_name):
    osl.create_namespace(fresh_name)
    with pytest.raises(AlreadyExists):
        osl.create_namespace(fresh_name)


def test_create_reuses_stale_mount_point_left_by_a_crash(fresh_name):
    Path(f"/run/netns/{fresh_name}").touch()
    assert not osl.namespace_exists(fresh_name)

    osl.create_namespace(fresh_name)

    assert osl.namespace_exists(fresh_name)


def test_delete_namespace_is_idempotent(fresh_name):
    osl.create_namespace(fresh_name)

    assert osl.delete_namespace(fresh_name) is True
    assert osl.delete_namespace(fresh_name) is False
    assert not os.path.exists(f"/run/netns/{fresh_name}")


def test_list_namespaces_filters_by_prefix(fresh_name):
    prefix = fresh_name[:-2]
    osl.create_namespace(fresh_name)

    assert fresh_name in osl.list_namespaces(prefix)
    assert fresh_name not in osl.list_namespaces("cnm-")


def test_handle_on_missing_namespace_does_not_create_it():
    name = _name()
    with pytest.raises(NotFound), rtnl(name):
        pass
    assert not os.path.exists(f"/run/netns/{name}")


def test_calling_thread_never_changes_namespace(netns_host):
    before = os.readlink("/proc/thread-self/ns/net")

    osl.set_sysctl("net.ipv4.ip_forward", 1, netns=netns_host)
    osl.list_links(netns=netns_host)

    assert os.readlink("/proc/thread-self/ns/net") == before


def test_netlink_sockets_live_in_their_namespace_and_pin_none(netns_host):
    """osl's long-lived visitor thread makes each socket inside the namespace it
    names and goes back home after each: no thread of this process stays in it."""
    osl.create_bridge("br-visit", netns=netns_host)
    for _ in range(3):  # reused, and never stranded in the sandbox's namespace
        with raw_rtnl(netns_host) as inside:
            assert batch.find_link(inside, "br-visit") is not None
        with raw_rtnl(None) as home:
            assert batch.find_link(home, "br-visit") is None
    target = os.stat(f"/run/netns/{netns_host}")
    tasks = Path("/proc/self/task")
    for task in tasks.iterdir():
        with suppress(FileNotFoundError):  # a thread that just ended
            assert os.stat(task / "ns" / "net").st_ino != target.st_ino, task.name


@pytest.mark.parametrize(
    "path", ["/proc/self/ns/net", "/proc/thread-self/ns/net"], ids=["proc-self", "proc-thread-self"]
)
def test_external_key_accepts_a_process_namespace(path):
    assert osl.check_netns_path(path) == path


def test_external_key_accepts_a_bind_mounted_namespace(netns_host):
    assert osl.check_netns_path(f"/run/netns/{netns_host}")
    assert osl.is_netns(netns_host)


@pytest.mark.parametrize(
    "path",
    ["/etc/hostname", "/proc/self/ns/mnt", "/run", "/dev/null"],
    ids=["regular-file", "mount-namespace", "directory", "device"],
)
def test_external_key_rejects_what_is_not_a_network_namespace(path):
    with pytest.raises(InvalidArgument):
        osl.check_netns_path(path)
    assert not osl.is_netns(path)


def test_external_key_rejects_a_relative_path():
    with pytest.raises(InvalidArgument):
        osl.check_netns_path("proc/self/ns/net")


def test_external_key_of_a_vanished_process_is_not_found():
    with pytest.raises(NotFound):
        osl.check_netns_path("/proc/999999999/ns/net")


def test_external_key_works_as_a_namespace_reference(netns_host):
    """Work addressed through an external key lands in that namespace."""
    key = f"/run/netns/{netns_host}"
    osl.set_sysctl("net.ipv4.ip_forward", 1, netns=key)
    assert hn.exec_in(netns_host, "cat", "/proc/sys/net/ipv4/ip_forward").stdout.strip() == "1"


@pytest.mark.parametrize(
    "name",
    ["", "a/b", "..", ".", "x" * 200, "bad name", "semi;colon"],
    ids=["empty", "slash", "dotdot", "dot", "too-long", "space", "semicolon"],
)
def test_invalid_namespace_names_are_rejected(name):
    with pytest.raises(InvalidArgument):
        osl.create_namespace(name)
    with pytest.raises(InvalidArgument):
        osl.delete_namespace(name)


def test_sysctl_is_set_inside_the_namespace_only(netns_host):
    root_value = Path("/proc/sys/net/ipv4/ip_forward").read_text().strip()

    osl.set_sysctl("net.ipv4.ip_forward", 1, netns=netns_host)
    osl.set_sysctl("net/ipv4/conf/lo/route_localnet", 1, netns=netns_host)

    assert osl.get_sysctl("net.ipv4.ip_forward", netns=netns_host) == "1"
    assert (
        hn.exec_in(netns_host, "sysctl", "-n", "net.ipv4.conf.lo.route_localnet").stdout.strip()
        == "1"
    )
    assert Path("/proc/sys/net/ipv4/ip_forward").read_text().strip() == root_value


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("kernel.panic", 1),
        ("net.ipv4.../x", 1),
        ("net", 1),
        ("net.ipv4.ip_forward", "1\n2"),
        ("net/ipv4/../../kernel/panic", 1),
    ],
    ids=["not-net", "dots", "no-leaf", "newline-value", "traversal"],
)
def test_sysctl_rejects_bad_keys_and_values(netns_host, key, value):
    with pytest.raises(InvalidArgument):
        osl.set_sysctl(key, value, netns=netns_host)


def test_sysctl_missing_key_is_not_found(netns_host):
    with pytest.raises(NotFound):
        osl.get_sysctl("net/ipv6/conf/nosuchdev/disable_ipv6", netns=netns_host)
