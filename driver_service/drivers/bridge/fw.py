"""What the bridge driver needs from the firewall.

The bridge driver speaks only this small interface (`BridgeFirewall`), which
`driver_service.firewall.Firewall` (cnm's own nftables tables in this process's
namespace) implements as it is; tests may pass anything else that does. The
driver's calls are easy to follow: a network's rules are added at
CreateNetwork and removed at DeleteNetwork, a bridge port joins the network's
sets at Join and leaves them at Leave, a published port is one mapping, and
after a restart `load` makes the kernel match the records in one transaction.
"""

from __future__ import annotations

from typing import Protocol

from driver_service.firewall import BridgeNetwork, FirewallState
from services.values.ports import PortBinding


class BridgeFirewall(Protocol):
    def add_network(self, network: BridgeNetwork) -> None:
        """Masquerade, isolation, ICC and internal entries of one network. Idempotent."""
        ...

    def remove_network(self, network_id: str) -> None:
        """Remove a network's entries; the last one removes cnm's tables. Idempotent."""
        ...

    def attach_port(self, network_id: str, port: str) -> None:
        """A bridge port (host end of a veth) of the network. Idempotent."""
        ...

    def detach_port(self, port: str) -> None:
        """Idempotent: a port that is not there is success."""
        ...

    def add_port_mapping(self, published: PortBinding) -> None:
        """Publish one fixed host port to `published.container_ip`. Idempotent;
        ALREADY_EXISTS when another mapping holds the host binding."""
        ...

    def remove_port_mapping(self, published: PortBinding) -> None:
        """Idempotent: a mapping that is not there is success."""
        ...

    def load(self, state: FirewallState) -> None:
        """Make the kernel hold exactly these networks, (port, network id) pairs and
        published ports, in one sync."""
        ...

    def start_watcher(self, interval: float) -> None:
        """Start watching for rules removed behind cnm's back (self-healing)."""
        ...

    def close(self) -> None: ...

    def cleanup(self) -> None:
        """Remove every nftables table cnm owns in this namespace."""
        ...
