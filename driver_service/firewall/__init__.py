"""cnm's nftables firewall and port mapper (see `ruleset` for the table layout).

    fw = Firewall()                      # the host namespace (netns="name" for another one)
    fw.add_network(BridgeNetwork("n1", "cnm-br1", ("172.18.0.0/16",), icc=False))
    fw.attach_port("n1", "veth1a2b3c")   # needed for ICC off only
    fw.add_port_mapping(PortBinding("tcp", "0.0.0.0", 8080, container_port=80,
                                    container_ip="172.18.0.2"))   # validated by the caller
    fw.start_watcher()                   # restore cnm's tables after `nft flush ruleset`
    ...
    fw.cleanup()                         # remove everything cnm made

`cleanup(netns)` removes cnm's tables without any desired state (what
`cnm-driver --cleanup` needs).
"""

from __future__ import annotations

from driver_service.osl.nsenter import NetnsRef
from services.values.ports import PROTOCOLS

from . import ruleset
from .backend import BACKENDS, DEFAULT_BACKEND, NftError, open_backend
from .firewall import Firewall
from .model import BridgeNetwork, FirewallState, PortMapping
from .sysctl import enable_forwarding, forwarding_enabled, set_route_localnet

__all__ = [
    "BACKENDS",
    "DEFAULT_BACKEND",
    "PROTOCOLS",
    "BridgeNetwork",
    "Firewall",
    "FirewallState",
    "NftError",
    "PortMapping",
    "cleanup",
    "enable_forwarding",
    "forwarding_enabled",
    "open_backend",
    "set_route_localnet",
]


def cleanup(netns: NetnsRef = None, backend: str | None = None) -> None:
    """Delete cnm's nftables tables in `netns`. Idempotent."""
    nft = open_backend(backend, netns)
    try:
        nft.apply_script(ruleset.DELETE_TABLES)
    finally:
        nft.close()
