"""CNI: the `bridge` plugin with `host-local` IPAM chained with `portmap`, run
as a CNI runtime runs them (one exec per plugin, env + JSON on stdin, the
previous result passed down the chain, DEL in reverse order)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from peers import netns
from peers.base import CONTAINER_PORT, Container, NetworkPlan, Skip, System

CNI_PATH = Path("/usr/lib/cni")
CNI_VERSION = "1.0.0"


class Cni(System):
    name = "cni"

    def start(self) -> None:
        for plugin in ("bridge", "host-local", "portmap"):
            if not (CNI_PATH / plugin).exists():
                raise Skip(f"{CNI_PATH / plugin} missing (package containernetworking-plugins)")
        super().start()
        self.data_dir = self.run_dir / "host-local"

    def conflist(self, plan: NetworkPlan) -> dict[str, Any]:
        return {
            "cniVersion": CNI_VERSION,
            "name": f"{self.tag}-n{plan.index}",
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": f"cnib{plan.index}",
                    "isGateway": True,
                    "ipMasq": True,
                    "hairpinMode": True,
                    "ipam": {
                        "type": "host-local",
                        "ranges": [[{"subnet": str(plan.subnet), "gateway": plan.gateway}]],
                        "routes": [{"dst": "0.0.0.0/0"}],
                        "dataDir": str(self.data_dir),
                    },
                },
                {"type": "portmap", "capabilities": {"portMappings": True}, "snat": True},
            ],
        }

    def _steps(self, c: Container, command: str, prev: Any = None) -> list[dict[str, Any]]:
        conf = self.conflist(self.networks[c.network])
        env = {
            "CNI_COMMAND": command,
            "CNI_CONTAINERID": c.name,
            "CNI_NETNS": c.path,
            "CNI_IFNAME": "eth0",
            "CNI_PATH": str(CNI_PATH),
        }
        mappings = [{"hostPort": c.host_port, "containerPort": CONTAINER_PORT, "protocol": "tcp"}]
        steps = []
        for plugin in conf["plugins"]:
            stdin = {"cniVersion": conf["cniVersion"], "name": conf["name"], **plugin}
            stdin.pop("capabilities", None)
            if plugin.get("capabilities", {}).get("portMappings"):
                stdin["runtimeConfig"] = {"portMappings": mappings}
            step: dict[str, Any] = {
                "argv": [str(CNI_PATH / plugin["type"])],
                "env": env,
                "stdin": stdin,
            }
            if command == "ADD":
                step["prev_result"] = plugin is not conf["plugins"][0]
            elif prev is not None:
                stdin["prevResult"] = prev  # DEL: the cached result of the ADD
            steps.append(step)
        return steps if command == "ADD" else steps[::-1]

    def create_network(self, plan: NetworkPlan) -> None:
        """Nothing to do: the bridge plugin makes its bridge at the first ADD."""

    def delete_network(self, plan: NetworkPlan) -> None:
        # CNI never deletes its bridge; a runtime removing the network would.
        host = f"/run/netns/{self.host_ns}"
        bridge = f"cnib{plan.index}"
        if bridge in netns.links(host):
            netns.run(netns.in_netns(host, ["ip", "link", "del", bridge]))

    def connect(self, c: Container) -> float:
        answer = self.agent.chain(self._steps(c, "ADD"))  # type: ignore[union-attr]
        if answer["rc"] != 0:
            raise RuntimeError(f"cni ADD {c.name}: {answer['stdout']} {answer['stderr']}")
        result = json.loads(answer["stdout"])
        c.state["result"] = result
        ip = result["ips"][0]
        c.address = ip["address"].split("/")[0]
        c.gateway = ip["gateway"]
        return answer["seconds"]

    def disconnect(self, c: Container) -> float:
        answer = self.agent.chain(self._steps(c, "DEL", c.state.pop("result", None)))  # type: ignore[union-attr]
        if answer["rc"] != 0:
            raise RuntimeError(f"cni DEL {c.name}: {answer['stdout']} {answer['stderr']}")
        return answer["seconds"]
