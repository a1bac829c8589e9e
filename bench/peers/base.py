"""What every system under test offers the runner: networks, sandboxes that
already exist, connect and disconnect (timed), and the checks."""

from __future__ import annotations

import ipaddress
import logging
import os
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from peers import netns

log = logging.getLogger(__name__)

CONTAINER_PORT = 80


class Skip(Exception):
    """The system cannot run on this machine; the message says why."""


@dataclass
class Container:
    """One container: its namespace exists before connect (as the issue asks)."""

    name: str
    network: int  # index of the network it joins
    slot: int  # position on that network (0-based)
    host_port: int
    path: str = ""  # its network namespace
    address: str = ""  # bare IPv4 once connected
    gateway: str = ""
    state: dict[str, Any] = field(default_factory=dict)  # the system's own handles


@dataclass(frozen=True)
class NetworkPlan:
    index: int
    subnet: ipaddress.IPv4Network

    @property
    def gateway(self) -> str:
        return str(self.subnet.network_address + 1)

    def address(self, slot: int) -> str:
        return str(self.subnet.network_address + 2 + slot)


class System:
    """Base: a host namespace of its own; subclasses do the rest."""

    name = "?"
    # In the names of its containers' namespaces; unique among the systems.
    short = ""
    # Whether the runner makes the container namespaces (`ip netns add`), or the
    # system does (Docker: runc makes them when a container starts).
    runner_makes_namespaces = True

    def __init__(self, tag: str, run_dir: Path, octet: int) -> None:
        self.tag = tag
        self.run_dir = run_dir / self.name
        self.host_ns = f"{tag}-{self.name}-host"
        self.octet = octet  # second octet of this system's subnets: 10.<octet>.<net>.0/24
        self.procs: list[subprocess.Popen] = []
        self.agent: netns.Agent | None = None
        self.networks: dict[int, NetworkPlan] = {}

    # -------------------------------------------------------------- lifecycle

    def start(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        netns.add_namespaces([self.host_ns])
        host = f"/run/netns/{self.host_ns}"
        netns.run(netns.in_netns(host, ["ip", "link", "set", "lo", "up"]))
        # The address published ports are reached at (locally generated traffic);
        # on lo, since this kernel has no dummy links.
        netns.run(netns.in_netns(host, ["ip", "addr", "add", f"{self.host_ip}/32", "dev", "lo"]))
        self.agent = netns.Agent(self.host_ns)

    @property
    def host_ip(self) -> str:
        # TEST-NET-2 address inside our own host namespace only.
        return f"198.51.100.{self.octet - 199}"

    def plan_network(self, index: int) -> NetworkPlan:
        plan = NetworkPlan(index, ipaddress.ip_network(f"10.{self.octet}.{index}.0/24"))
        self.networks[index] = plan
        return plan

    def stop(self) -> list[str]:
        """Stops what it started (by PID) and removes its host namespace; returns problems."""
        problems: list[str] = []
        if self.agent is not None:
            self.agent.close()
        for proc in reversed(self.procs):
            problems += stop_process(proc)
        netns.delete_namespaces([self.host_ns])
        return problems

    def restart(self) -> None:
        """A fresh host namespace (and processes): the fast way to drop everything
        a stateless peer made there when its own teardown is not what is measured."""
        self.stop()
        self.procs = []
        self.agent = None
        self.start()

    # -------------------------------------------------------------- per system

    def create_network(self, plan: NetworkPlan) -> None:
        raise NotImplementedError

    def delete_network(self, plan: NetworkPlan) -> None:
        raise NotImplementedError

    def prepare(self, containers: list[Container]) -> None:
        """Untimed: whatever must exist before connect besides the namespace."""

    def release(self, containers: list[Container]) -> None:
        """Untimed: the reverse of prepare."""

    def connect(self, c: Container) -> float:
        raise NotImplementedError

    def disconnect(self, c: Container) -> float:
        raise NotImplementedError

    def rules(self) -> int:
        return netns.nft_rules(self.host_ns)

    def host_links(self) -> list[str]:
        return [n for n in netns.links(f"/run/netns/{self.host_ns}") if n != "lo"]

    def leftovers(self) -> list[str]:
        """After every container and network is gone: what is still there."""
        left = [f"link {name}" for name in self.host_links()]
        return left


def stop_process(proc: subprocess.Popen, grace: float = 10) -> list[str]:
    if proc.poll() is not None:
        return []
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(grace)
        return []
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return [f"pid {proc.pid} ({' '.join(map(str, proc.args[:3]))}) needed SIGKILL"]


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def pids_under(path: str) -> list[int]:
    """Processes whose command line mentions `path` (ours: started for this run)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if path in cmdline:
            found.append(int(entry.name))
    return found
