"""Bad input to the firewall is refused, by name, before anything reaches the kernel.
Published ports are validated at the driver's edge, not here (tests/unit/test_values.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from driver_service.firewall import BridgeNetwork, Firewall, FirewallState, PortMapping
from driver_service.firewall.backend import open_backend
from harness import netns
from services.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from services.values.ports import PortBinding

GOOD_NET = {"network_id": "n1", "bridge": "cnm-br1", "subnets": ("172.30.0.0/24",)}
GOOD_MAP = {
    "protocol": "tcp",
    "host_ip": "0.0.0.0",
    "host_port": 8080,
    "container_ip": "172.30.0.2",
    "container_port": 80,
}


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("network_id", ""),
        ("network_id", "a b"),
        ("network_id", "x" * 129),
        ("bridge", ""),
        ("bridge", "a" * 16),
        ("bridge", "br;drop"),
        ("bridge", "br 0"),
        ("bridge", ".."),
        ("bridge", 'x"}'),
        ("subnets", ("172.30.0.1/24",)),
        ("subnets", ("300.1.0.0/16",)),
        ("subnets", ("0.0.0.0/0",)),
        ("subnets", ("::/0",)),
        ("subnets", ("127.0.0.0/8",)),
        ("subnets", ("224.0.0.0/4",)),
        ("subnets", "not-a-cidr"),
        ("subnets", 42),
        ("icc", "yes"),
        ("masquerade", 1),
        ("internal", None),
    ],
    ids=lambda v: repr(v)[:30],
)
def test_bad_network_definition_is_invalid_argument(field: str, value: object) -> None:
    with pytest.raises(InvalidArgument) as err:
        BridgeNetwork(**{**GOOD_NET, field: value})
    shown = value[0] if isinstance(value, tuple) else value
    if isinstance(shown, str) and shown:
        assert shown in str(err.value), "the message names the bad value"


def test_values_are_normalised() -> None:
    net = BridgeNetwork("n1", "br0", ("fd00::/64", "10.0.0.0/24", "10.0.0.0/24"))
    assert [str(s) for s in net.subnets] == ["10.0.0.0/24", "fd00::/64"]
    # A published port is validated at the driver's edge (services.values.ports);
    # the firewall takes it as it is and only types its addresses.
    m = PortMapping.of(PortBinding("udp", "::", 53, container_port=53, container_ip="fd00::2"))
    assert (m.protocol, m.all_addresses, m.version) == ("udp", True, 6)
    assert str(m) == "[::]:53/udp -> [fd00::2]:53"


def test_unknown_backend_and_namespace_fail_loudly() -> None:
    with pytest.raises(InvalidArgument, match="iptables"):
        open_backend("iptables")
    with pytest.raises(NotFound):
        Firewall(netns="cnmtest-does-not-exist")


@pytest.fixture
def fw(netns_host: str) -> Iterator[Firewall]:
    firewall = Firewall(netns=netns_host, manage_sysctls=False)
    try:
        firewall.add_network(BridgeNetwork(**GOOD_NET))
        firewall.add_network(BridgeNetwork("n2", "cnm-br2", ("172.30.1.0/24",), internal=True))
        firewall.add_port_mapping(PortBinding(**GOOD_MAP))
        yield firewall
    finally:
        firewall.cleanup()
        firewall.close()


def _ruleset(ns: str) -> str:
    return netns.exec_in(ns, "nft", "list", "ruleset").stdout


def test_refused_changes_leave_kernel_and_state_alone(fw: Firewall, netns_host: str) -> None:
    before_kernel, before_state = _ruleset(netns_host), fw.state()
    taken = {**GOOD_MAP, "container_ip": "172.30.0.3"}
    with pytest.raises(
        AlreadyExists, match=r"Bind for 0\.0\.0\.0:8080 failed: port is already allocated"
    ):
        fw.add_port_mapping(PortBinding(**taken))
    with pytest.raises(AlreadyExists, match="overlaps 0.0.0.0:8080"):
        fw.add_port_mapping(PortBinding(**{**GOOD_MAP, "host_ip": "10.0.0.1"}))
    with pytest.raises(FailedPrecondition, match="internal"):
        fw.add_port_mapping(
            PortBinding(**{**GOOD_MAP, "host_port": 81, "container_ip": "172.30.1.2"})
        )
    with pytest.raises(AlreadyExists, match="cnm-br1"):
        fw.add_network(BridgeNetwork("n3", "cnm-br1", ("172.30.3.0/24",)))
    with pytest.raises(NotFound, match="n9"):
        fw.attach_port("n9", "veth0")
    with pytest.raises(InvalidArgument, match="veth0123456789abc"):
        fw.attach_port("n1", "veth0123456789abc")
    with pytest.raises(InvalidArgument, match="unknown network"):
        fw.load(FirewallState(networks=(BridgeNetwork(**GOOD_NET),), ports=(("p1", "n7"),)))
    # Same mapping again, unknown removals: idempotent no-ops.
    fw.add_port_mapping(PortBinding(**GOOD_MAP))
    fw.remove_port_mapping(PortBinding(**taken))
    fw.remove_network("n-unknown")
    fw.detach_port("veth-unknown")
    assert _ruleset(netns_host) == before_kernel
    assert fw.state() == before_state
    assert not fw.ensure()


def test_udp_and_tcp_share_a_port_number(fw: Firewall) -> None:
    fw.add_port_mapping(PortBinding(**{**GOOD_MAP, "protocol": "udp"}))
    fw.add_port_mapping(PortBinding(**{**GOOD_MAP, "host_ip": "::", "container_ip": "fd00::2"}))
    assert len(fw.list_port_mappings()) == 3
    assert fw.in_sync()
