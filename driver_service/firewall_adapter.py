"""The bridge driver's firewall (`drivers.bridge.fw.BridgeFirewall`) on top of
`driver_service.firewall`: cnm's own nftables tables in this process's namespace.

A thin translation of values: the driver's NetworkRules / PortBinding become
the firewall's BridgeNetwork / PortMapping (which validate themselves again).
"""

from __future__ import annotations

from collections.abc import Sequence

from driver_service import firewall
from driver_service.drivers.bridge.fw import BridgeFirewall, NetworkRules
from driver_service.models import PortBinding

# How often the firewall checks that its tables are still in the kernel.
WATCH_INTERVAL = 1.0


def _network(rules: NetworkRules) -> firewall.BridgeNetwork:
    return firewall.BridgeNetwork(
        network_id=rules.network_id,
        bridge=rules.bridge,
        subnets=rules.subnets,
        icc=rules.icc,
        masquerade=rules.masquerade,
        internal=rules.internal,
    )


def _mapping(b: PortBinding) -> firewall.PortMapping:
    return firewall.PortMapping(
        protocol=b.protocol,
        host_ip=b.host_ip,
        host_port=b.host_port,
        container_ip=b.container_ip,
        container_port=b.container_port,
    )


class NftFirewall:
    def __init__(self) -> None:
        self.fw = firewall.Firewall()

    def add_network(self, rules: NetworkRules) -> None:
        self.fw.add_network(_network(rules))

    def remove_network(self, network_id: str) -> None:
        self.fw.remove_network(network_id)

    def attach_port(self, network_id: str, ifname: str) -> None:
        self.fw.attach_port(network_id, ifname)

    def detach_port(self, network_id: str, ifname: str) -> None:
        self.fw.detach_port(ifname)

    def publish(self, binding: PortBinding) -> None:
        self.fw.add_port_mapping(_mapping(binding))

    def unpublish(self, binding: PortBinding) -> None:
        self.fw.remove_port_mapping(_mapping(binding))

    def load(
        self,
        networks: Sequence[NetworkRules],
        ports: Sequence[tuple[str, str]],
        bindings: Sequence[PortBinding],
    ) -> None:
        self.fw.load(
            firewall.FirewallState(
                networks=tuple(_network(n) for n in networks),
                ports=tuple((port, network_id) for network_id, port in ports),
                mappings=tuple(_mapping(b) for b in bindings),
            )
        )

    def start(self) -> None:
        self.fw.start_watcher(WATCH_INTERVAL)

    def close(self) -> None:
        self.fw.close()

    def cleanup(self) -> None:
        firewall.cleanup()


def make_firewall() -> BridgeFirewall:
    return NftFirewall()
