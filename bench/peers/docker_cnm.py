"""Docker with cnm as its network and IPAM plugin: the `docker` row's dockerd
and API calls, but networks are `-d cnm --ipam-driver cnm`, served by
cnm-docker-plugin in front of the same cnm stack as the `cnm` row (all in this
system's host namespace). The difference to the `docker` row is what
replacing libnetwork's bridge driver and IPAM by cnm costs or saves; the
difference to the `cnm` row is what dockerd and the plugin hop add.

dockerd runs in a mount namespace of its own whose /run/docker/plugins is
this system's plugin directory (a tmpfs over /run there), so the machine's
own plugin directory is never touched; --iptables=false, as cnm programs the
firewall and the port mappings (nftables).
"""

from __future__ import annotations

import subprocess
import time
from typing import Any

from cnm.controller.v1 import controller_pb2 as pb
from peers.base import Container
from peers.cnm import BIN, Cnm
from peers.docker import Docker

PLUGIN = "cnm"


class DockerCnm(Docker):
    name = "docker-cnm"
    short = "dcn"
    driver = PLUGIN
    ipam_driver = PLUGIN
    dockerd_flags = ("--iptables=false",)

    def before_dockerd(self) -> None:
        # The cnm stack, in our host namespace and under our run directory.
        self.stack = Cnm(self.tag, self.run_dir.parent, self.octet)
        self.stack.run_dir = self.run_dir / "cnm"
        self.stack.run_dir.mkdir()
        self.stack.host_ns = self.host_ns
        try:
            self.stack.start_services()
        finally:
            # Stopped after dockerd (System.stop goes through procs in reverse).
            self.procs.extend(self.stack.procs)
        self.plugins = self.run_dir / "plugins"
        self.plugins.mkdir()
        sock = self.plugins / f"{PLUGIN}.sock"
        log_file = open(self.run_dir / "plugin.log", "ab")  # noqa: SIM115 - lives with the process
        self.plugin = subprocess.Popen(
            [str(BIN / "cnm-docker-plugin"), "--socket", str(sock),
             "--controller", self.stack.controller, "--host", f"{self.tag}-host",
             "--state-dir", str(self.run_dir / "plugin-state"), "--log-level", "warning"],
            stdout=log_file, stderr=log_file,
        )  # fmt: skip
        log_file.close()
        self.procs.append(self.plugin)
        deadline = time.monotonic() + 30
        while not sock.exists():
            if self.plugin.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"cnm-docker-plugin did not start (see {self.run_dir})")
            time.sleep(0.05)

    def dockerd_argv(self, argv: list[str]) -> list[str]:
        script = (
            "set -e; mount -t tmpfs -o mode=755 cnm-bench-run /run; "
            'mkdir -p /run/docker/plugins; mount --bind "$0" /run/docker/plugins; exec "$@"'
        )
        inner = ["unshare", "-m", "--propagation", "private", "--",
                 "sh", "-c", script, str(self.plugins), *argv]  # fmt: skip
        return super().dockerd_argv(inner)

    def netns_path(self, info: dict[str, Any]) -> str:
        # Docker's sandbox key is a mount in dockerd's own mount namespace.
        return f"/proc/{info['State']['Pid']}/ns/net"

    def published(self, c: Container, info: dict[str, Any]) -> bool:
        # Docker reads published ports back only from its built-in drivers; ask cnm.
        eps = self.stack.stub.ListEndpoints(pb.ListEndpointsRequest(), timeout=30).endpoints
        address = f"{c.address}/"
        return any(e.ipv4_address.startswith(address) and e.published_ports for e in eps)

    def leftovers(self) -> list[str]:
        # Request ids of the plugin's creates expire after the controller's request_ttl.
        return [line for line in self.stack.leftovers() if ":req:" not in line]

    def stop(self) -> list[str]:
        # dockerd first (its containers' endpoints go through the plugin), then
        # the plugin and the stack: System.stop goes through procs in reverse.
        problems = super().stop()
        if hasattr(self, "stack") and hasattr(self.stack, "channel"):
            self.stack.channel.close()
        return problems
