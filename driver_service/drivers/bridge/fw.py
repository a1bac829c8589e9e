"""What the bridge driver needs from the firewall, and the adapter to `driver_service.firewall`.

The bridge driver speaks only this small interface (`BridgeFirewall`), so the
firewall's own API can evolve without touching the driver, and so the
driver's calls are easy to follow: a network's rules are added at
CreateNetwork and removed at DeleteNetwork, a bridge port joins the
network's sets at Join and leaves them at Leave, and after a restart `load`
makes the kernel match the records in one transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from driver_service.firewall import BridgeNetwork
from services.values.ports import PortBinding


class BridgeFirewall(Protocol):
    def add_network(self, rules: BridgeNetwork) -> None:
        """Masquerade, isolation, ICC and internal entries of one network. Idempotent."""
        ...

    def remove_network(self, network_id: str) -> None:
        """Remove a network's entries; the last one removes cnm's tables. Idempotent."""
        ...

    def attach_port(self, network_id: str, ifname: str) -> None:
        """A bridge port (host end of a veth) of the network. Idempotent."""
        ...

    def detach_port(self, network_id: str, ifname: str) -> None:
        """Idempotent: a port that is not there is success."""
        ...

    def publish(self, binding: PortBinding) -> None:
        """Publish one fixed host port to `binding.container_ip`. Idempotent;
        ALREADY_EXISTS when another mapping holds the host binding."""
        ...

    def unpublish(self, binding: PortBinding) -> None:
        """Idempotent: a mapping that is not there is success."""
        ...

    def load(
        self,
        networks: Sequence[BridgeNetwork],
        ports: Sequence[tuple[str, str]],
        bindings: Sequence[PortBinding],
    ) -> None:
        """Make the kernel hold exactly these networks, (network id, port) pairs and
        published ports, in one sync."""
        ...

    def start(self) -> None:
        """Start watching for rules removed behind cnm's back (self-healing)."""
        ...

    def close(self) -> None: ...

    def cleanup(self) -> None:
        """Remove every nftables table cnm owns in this namespace."""
        ...
