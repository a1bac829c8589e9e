"""osl.link_names: every link's name, read without decoding the links.

The link repair pass dumps the host namespace's links every few seconds and
on every deletion of a link cnm owns. With pyroute2's dump that decoded
every veth into nested objects held in reference cycles, and the driver's RSS
grew with the number of veths (issue 15). `link_names` must give the same
names as `list_links` and create none of those objects.
"""

from __future__ import annotations

import gc
import subprocess

import pytest
from pyroute2.netlink import nlmsg_base

from driver_service import osl
from services.errors import NotFound

LINKS = 300  # a dump of this many links spans many datagrams


def _add_veths(ns: str, names: list[str]) -> None:
    """Veth pairs made of consecutive names (no dummy module on every kernel)."""
    pairs = zip(names[::2], names[1::2], strict=True)
    batch = "".join(f"link add {a} type veth peer name {b}\n" for a, b in pairs)
    subprocess.run(["ip", "-n", ns, "-batch", "-"], input=batch, text=True, check=True)


def _netlink_messages() -> int:
    return sum(1 for o in gc.get_objects() if isinstance(o, nlmsg_base))


def test_link_names_are_list_links_names_tombstones_left_out_unless_asked(netns_host):
    links = [f"ve{i}" for i in range(LINKS)]
    tombstones = [f"{osl.query.TOMBSTONE_PREFIX}x{i}" for i in range(2)]
    _add_veths(netns_host, [*links, *tombstones])

    names = osl.link_names(netns=netns_host)

    assert names == {li.name for li in osl.list_links(netns=netns_host)}
    assert names == {"lo", *links}
    assert osl.link_names(netns=netns_host, tombstones=True) == {"lo", *tombstones, *links}


def test_link_names_decodes_no_netlink_message_objects(netns_host):
    _add_veths(netns_host, [f"ve{i}" for i in range(LINKS)])
    gc.collect()
    gc.disable()  # garbage must stay countable during the call
    try:
        before = _netlink_messages()
        names = osl.link_names(netns=netns_host)
        lean = _netlink_messages() - before
        osl.list_links(netns=netns_host)
        decoded = _netlink_messages() - before - lean
    finally:
        gc.enable()
        gc.collect()
    assert len(names) == LINKS + 1
    assert lean == 0
    # The probe sees what pyroute2's dump leaves behind (one message or more per link).
    assert decoded >= LINKS


def test_link_names_of_a_missing_namespace_is_not_found():
    with pytest.raises(NotFound):
        osl.link_names(netns="cnmt-no-such-namespace")


def test_addresses_and_routes_are_named_by_the_lean_dump(netns_host):
    # list_addresses / list_routes name interfaces from the lean dump's index -> name
    _add_veths(netns_host, ["ve0", "ve1"])
    for argv in (
        ["addr", "add", "10.78.0.1/24", "dev", "ve0"],
        ["link", "set", "ve0", "up"],
        ["link", "set", "ve1", "up"],
        ["route", "add", "10.79.0.0/24", "dev", "ve0"],
    ):
        subprocess.run(["ip", "-n", netns_host, *argv], check=True)

    addresses = osl.list_addresses(netns=netns_host, ifname="ve0")
    routes = {str(r.dst): r.ifname for r in osl.list_routes(netns=netns_host)}

    assert [str(a.address) for a in addresses if a.address.version == 4] == ["10.78.0.1/24"]
    assert routes["10.78.0.0/24"] == "ve0"
    assert routes["10.79.0.0/24"] == "ve0"


def test_link_names_of_a_bridges_ports_of_a_kind(netns_host):
    # The overlay's Leave asks this (are veths still plugged into its bridge?)
    _add_veths(netns_host, ["ve0", "ve1", "ve2", "ve3"])
    for argv in (
        ["link", "add", "br0", "type", "bridge"],
        ["link", "add", "br1", "type", "bridge"],
        ["link", "set", "ve0", "master", "br0"],
        ["link", "set", "ve2", "master", "br1"],
    ):
        subprocess.run(["ip", "-n", netns_host, *argv], check=True)

    assert osl.link_names(netns=netns_host, master="br0", kind="veth") == {"ve0"}
    assert osl.link_names(netns=netns_host, master="br1") == {"ve2"}
    assert osl.link_names(netns=netns_host, kind="bridge") == {"br0", "br1"}
    assert osl.link_names(netns=netns_host, master="no-such-bridge") == set()
    kinds = {li.name: (li.kind, li.master) for li in osl.list_links(netns=netns_host)}
    assert kinds["ve0"] == ("veth", "br0") and kinds["ve1"] == ("veth", None)
