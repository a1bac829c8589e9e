"""osl's macvlan children and 802.1q sub-interfaces on real namespaces.

The "host" is a namespace holding a veth end as the parent; children are born
in sandbox namespaces the test makes. Nothing leaves them.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from driver_service import osl
from harness import kernel_snapshot
from harness.netns import exec_in, run
from services.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound


@pytest.fixture
def parent(netns_host: str) -> str:
    """`up0` in the host namespace, MTU 1400, its peer up too (so it has carrier)."""
    run("ip", "-n", netns_host, "link", "add", "up0", "mtu", "1400", "type", "veth",
        "peer", "name", "up1", "mtu", "1400")  # fmt: skip
    run("ip", "-n", netns_host, "link", "set", "up0", "up")
    run("ip", "-n", netns_host, "link", "set", "up1", "up")
    return "up0"


@pytest.fixture
def sandboxes() -> Iterator[list[str]]:
    names = [f"cnmtest-{kernel_snapshot.TEST_TAG}-mv{uuid.uuid4().hex[:6]}" for _ in range(2)]
    for name in names:
        osl.create_namespace(name)
    try:
        yield names
    finally:
        for name in names:
            osl.delete_namespace(name)


def _child(host: str, sandbox: str, address: str, **kw) -> int:
    return osl.create_macvlan(
        "eth0",
        parent="up0",
        parent_netns=host,
        netns=sandbox,
        addresses=[address],
        **{"mode": "bridge", **kw},
    )


def test_child_is_born_in_the_sandbox_with_the_parents_mtu_and_talks(netns_host, parent, sandboxes):
    one, two = sandboxes
    _child(netns_host, one, "10.78.0.2/24", mac="02:42:0a:4e:00:02", alias="cnm:ep:x")
    _child(netns_host, two, "10.78.0.3/24")
    link = osl.get_link("eth0", netns=one)
    assert (link.kind, link.mtu, link.mac, link.alias) == (
        "macvlan",
        1400,
        "02:42:0a:4e:00:02",
        "cnm:ep:x",
    )
    assert link.up
    # Born there: nothing new in the host namespace.
    assert sorted(li.name for li in osl.list_links(netns=netns_host)) == ["lo", "up0", "up1"]
    assert exec_in(one, "ping", "-c1", "-W2", "-q", "10.78.0.3", check=False).returncode == 0


def test_refusals_leave_nothing(netns_host, parent, sandboxes):
    one, two = sandboxes
    _child(netns_host, one, "10.78.0.2/24")
    with pytest.raises(AlreadyExists):
        _child(netns_host, one, "10.78.0.4/24")  # eth0 is taken in `one`
    with pytest.raises(NotFound):
        osl.create_macvlan(
            "eth0", parent="nope0", parent_netns=netns_host, mode="bridge", netns=two
        )
    with pytest.raises(InvalidArgument):
        osl.create_macvlan("eth0", parent="up0", parent_netns=netns_host, mode="nat", netns=two)
    with pytest.raises(InvalidArgument):
        # A route the kernel rejects: the child made before it is removed again.
        _child(
            netns_host, two, "10.78.0.3/24", routes=[osl.Route("10.9.0.0/16", gateway="10.99.0.1")]
        )
    assert [li.name for li in osl.list_links(netns=two)] == ["lo"]
    # A passthru child is alone on its parent (the kernel's rule), whichever comes first.
    with pytest.raises(FailedPrecondition) as err:
        _child(netns_host, two, "10.78.0.3/24", mode="passthru")
    assert err.value.reason == "PARENT_REFUSED"
    osl.delete_link("eth0", netns=one)
    _child(netns_host, one, "10.78.0.2/24", mode="passthru")
    with pytest.raises(FailedPrecondition) as err:
        _child(netns_host, two, "10.78.0.3/24", mode="passthru")
    assert err.value.reason == "PARENT_REFUSED"
    assert [li.name for li in osl.list_links(netns=two)] == ["lo"]


def test_vlan_sub_interface_or_a_clear_refusal_without_8021q(netns_host, parent):
    assert osl.parse_vlan_parent("up0.10") == ("up0", 10)
    assert osl.parse_vlan_parent("up0") is None and osl.parse_vlan_parent("my.if") is None
    with pytest.raises(InvalidArgument, match="between 1-4094"):
        osl.parse_vlan_parent("up0.4095")
    try:
        osl.create_vlan("up0.10", base="up0", vlan_id=10, netns=netns_host, alias="cnm:net:x")
    except FailedPrecondition as e:
        # This machine's kernel: no 8021q module.
        assert e.reason == "VLAN_UNSUPPORTED" and "802.1q" in str(e)
        assert "up0.10" not in {li.name for li in osl.list_links(netns=netns_host)}
    else:
        link = osl.get_link("up0.10", netns=netns_host)
        assert (link.kind, link.alias, link.up) == ("vlan", "cnm:net:x", True)
