"""cnm behind its CNI plugin: the same cnm stack as `cnm`, but every connect is
`cnm-cni` ADD and every disconnect DEL, executed as a CNI runtime executes a
plugin (env + JSON on stdin, in the host namespace, through the agent). The
difference to the `cnm` row is what the CNI shim costs: a Python process
start, CreateSandbox on the runtime's namespace, Connect, and the result.
"""

from __future__ import annotations

import json
from typing import Any

from peers.base import CONTAINER_PORT, Container
from peers.cnm import BIN, Cnm

CNI_VERSION = "1.1.0"


class CnmCni(Cnm):
    name = "cnm-cni"
    short = "ccn"

    def _step(self, c: Container, command: str, prev: Any = None) -> dict[str, Any]:
        stdin: dict[str, Any] = {
            "cniVersion": CNI_VERSION,
            "name": self.net_name(self.networks[c.network]),
            "type": "cnm",
            "controller": self.controller,
            "runtimeConfig": {
                "portMappings": [
                    {"hostPort": c.host_port, "containerPort": CONTAINER_PORT, "protocol": "tcp"}
                ]
            },
        }
        if prev is not None:
            stdin["prevResult"] = prev
        env = {
            "CNI_COMMAND": command,
            "CNI_CONTAINERID": c.name,
            "CNI_NETNS": c.path,
            "CNI_IFNAME": "eth0",
            "CNI_PATH": str(BIN),
        }
        return {"argv": [str(BIN / "cnm-cni")], "env": env, "stdin": stdin}

    def prepare(self, containers: list[Container]) -> None:
        """Nothing: ADD makes the sandbox on the runner's namespace."""

    def release(self, containers: list[Container]) -> None:
        """Untimed DEL of containers a phase left connected (as a runtime removing
        them would): the parallel phase times only connects for the peers."""
        for c in containers:
            if "result" in c.state:
                self.disconnect(c)

    def leftovers(self) -> list[str]:
        # Every ADD carries request ids (the plugin's client retries with them);
        # their records expire after the controller's request_ttl by design.
        return [line for line in super().leftovers() if ":req:" not in line]

    def connect(self, c: Container) -> float:
        answer = self.agent.chain([self._step(c, "ADD")])  # type: ignore[union-attr]
        if answer["rc"] != 0:
            raise RuntimeError(f"cnm-cni ADD {c.name}: {answer['stdout']} {answer['stderr']}")
        result = json.loads(answer["stdout"])
        c.state["result"] = result
        ip = result["ips"][0]
        c.address = ip["address"].split("/")[0]
        c.gateway = ip["gateway"]
        return answer["seconds"]

    def disconnect(self, c: Container) -> float:
        step = self._step(c, "DEL", c.state.pop("result", None))
        answer = self.agent.chain([step])  # type: ignore[union-attr]
        if answer["rc"] != 0:
            raise RuntimeError(f"cnm-cni DEL {c.name}: {answer['stdout']} {answer['stderr']}")
        return answer["seconds"]
