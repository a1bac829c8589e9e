"""netavark (Podman's network stack): `netavark setup` / `teardown` of a bridge
network with one port mapping, in its JSON network-options format.

netavark does no IPAM (Podman allocates): the benchmark hands out addresses in
order, as Podman's IPAM would. Version 1.4 (Debian 12) has no nftables driver
("nftables support presently not available"), so it runs with NETAVARK_FW=iptables
(Debian's iptables is iptables-nft: its rules are counted with `nft` too).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from peers.base import CONTAINER_PORT, Container, NetworkPlan, Skip, System

NETAVARK = Path("/usr/lib/podman/netavark")


class Netavark(System):
    name = "netavark"

    def start(self) -> None:
        if not NETAVARK.exists():
            raise Skip(f"{NETAVARK} missing (package netavark)")
        super().start()
        self.config_dir = self.run_dir / "config"
        self.config_dir.mkdir(parents=True, exist_ok=True)

    def options(self, c: Container) -> dict[str, Any]:
        plan = self.networks[c.network]
        name = f"{self.tag}-n{plan.index}"
        return {
            "container_id": hashlib.sha256(c.name.encode()).hexdigest(),
            "container_name": c.name,
            "networks": {name: {"interface_name": "eth0", "static_ips": [plan.address(c.slot)]}},
            "network_info": {
                name: {
                    "name": name,
                    "id": hashlib.sha256(name.encode()).hexdigest(),
                    "driver": "bridge",
                    "network_interface": f"nvb{plan.index}",
                    "subnets": [{"subnet": str(plan.subnet), "gateway": plan.gateway}],
                    "ipv6_enabled": False,
                    "internal": False,
                    "dns_enabled": False,
                }
            },
            "port_mappings": [
                {
                    "host_ip": "",
                    "container_port": CONTAINER_PORT,
                    "host_port": c.host_port,
                    "range": 1,
                    "protocol": "tcp",
                }
            ],
        }

    def _run(self, c: Container, verb: str) -> dict[str, Any]:
        step = {
            "argv": [str(NETAVARK), "--config", str(self.config_dir), verb, c.path],
            "env": {"NETAVARK_FW": "iptables"},
            "stdin": json.dumps(self.options(c)),
        }
        # Podman holds its network lock around every netavark call (netavark 1.4
        # itself does not serialize: parallel setups fail creating their iptables
        # chains, "iptables: Chain already exists").
        answer = self.agent.chain([step], lock=str(self.run_dir / "netavark.lock"))  # type: ignore[union-attr]
        if answer["rc"] != 0:
            raise RuntimeError(
                f"netavark {verb} {c.name}: rc {answer['rc']} {answer['stdout'][-300:]} "
                f"{answer['stderr'][-300:]}"
            )
        return answer

    def create_network(self, plan: NetworkPlan) -> None:
        """Nothing to do: netavark makes the bridge at the first setup on it."""

    def delete_network(self, plan: NetworkPlan) -> None:
        """Nothing to do: netavark removes the bridge at the last teardown."""

    def connect(self, c: Container) -> float:
        answer = self._run(c, "setup")
        plan = self.networks[c.network]
        c.address, c.gateway = plan.address(c.slot), plan.gateway
        reported = json.loads(answer["stdout"])
        subnets = next(iter(reported.values()))["interfaces"]["eth0"]["subnets"]
        if subnets[0]["ipnet"].split("/")[0] != c.address:
            raise RuntimeError(f"netavark gave {subnets} to {c.name}, not {c.address}")
        return answer["seconds"]

    def disconnect(self, c: Container) -> float:
        return self._run(c, "teardown")["seconds"]
