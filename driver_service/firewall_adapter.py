"""The bridge driver's firewall (`drivers.bridge.fw.BridgeFirewall`) on top of
`driver_service.firewall`: cnm's own nftables tables in this process's namespace.

The firewall takes the driver's values as they are (`BridgeNetwork`, and
published `services.values.ports.PortBinding`s); this only renames calls.
"""

from __future__ import annotations

from collections.abc import Sequence

from driver_service import firewall
from driver_service.drivers.bridge.fw import BridgeFirewall
from services.values.ports import PortBinding

# How often the firewall checks that its tables are still in the kernel.
WATCH_INTERVAL = 1.0


class NftFirewall:
    def __init__(self) -> None:
        self.fw = firewall.Firewall()

    def add_network(self, network: firewall.BridgeNetwork) -> None:
        self.fw.add_network(network)

    def remove_network(self, network_id: str) -> None:
        self.fw.remove_network(network_id)

    def attach_port(self, network_id: str, ifname: str) -> None:
        self.fw.attach_port(network_id, ifname)

    def detach_port(self, network_id: str, ifname: str) -> None:
        self.fw.detach_port(ifname)

    def publish(self, binding: PortBinding) -> None:
        self.fw.add_port_mapping(binding)

    def unpublish(self, binding: PortBinding) -> None:
        self.fw.remove_port_mapping(binding)

    def load(
        self,
        networks: Sequence[firewall.BridgeNetwork],
        ports: Sequence[tuple[str, str]],
        bindings: Sequence[PortBinding],
    ) -> None:
        self.fw.load(
            firewall.FirewallState(
                networks=tuple(networks),
                ports=tuple((port, network_id) for network_id, port in ports),
                mappings=tuple(bindings),
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
