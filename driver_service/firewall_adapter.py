"""Builds the bridge driver's firewall from `driver_service.firewall` (nftables).

TEMPORARY: the nftables firewall package is still being written; until it
offers its API this returns a firewall that programs nothing and says so
loudly at start-up.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from driver_service.drivers.bridge.fw import BridgeFirewall, NetworkRules

log = logging.getLogger(__name__)


class _NoFirewall:
    def add_network(self, rules: NetworkRules) -> None:
        return None

    def remove_network(self, network_id: str) -> None:
        return None

    def attach_port(self, network_id: str, ifname: str) -> None:
        return None

    def detach_port(self, network_id: str, ifname: str) -> None:
        return None

    def load(self, networks: Sequence[NetworkRules], ports: Sequence[tuple[str, str]]) -> None:
        return None

    def start(self) -> None:
        return None

    def close(self) -> None:
        return None

    def cleanup(self) -> None:
        return None


def make_firewall() -> BridgeFirewall:
    log.error("nftables firewall not available yet: no masquerade, isolation or ICC rules")
    return _NoFirewall()
