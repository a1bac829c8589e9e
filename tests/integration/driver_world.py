"""A test host running a real cnm-driver, and helpers to call it (tests of issue 4).

`DriverHost` starts the driver service inside the test's namespace "host"
(`stack.start_driver`), talks to it over its unix socket with the generated
stubs, and on `close()` removes everything the driver made: it runs
`cnm-driver --cleanup` in the host namespace (which also proves that cleanup
works) and stops the service. Sandbox namespaces live under /run/netns with
this run's tagged prefix, so the leftover guard would notice any it missed.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from cnm.driver.v1 import driver_pb2 as pb
from cnm.driver.v1 import driver_pb2_grpc
from harness import netns
from harness.stack import BIN, short_tmp, start_driver

from services.ids import new_id

T = 10  # every RPC's timeout, seconds


@dataclass
class DriverHost:
    spawn: object
    redis_url: str
    host_ns: str
    netns_prefix: str
    host_id: str = "h1"
    env: dict[str, str] = field(default_factory=dict)
    run_dir: Path = field(default_factory=lambda: short_tmp("cnmdrv"))
    address: str = ""
    channel: grpc.Channel | None = None
    stub: driver_pb2_grpc.DriverStub | None = None

    def start(self, env: dict[str, str] | None = None) -> DriverHost:
        self.address = start_driver(
            self.spawn,
            self.redis_url,
            self.run_dir,
            host_id=self.host_id,
            netns_name=self.host_ns,
            netns_prefix=self.netns_prefix,
            env={**self.env, **(env or {})},
        )
        if self.channel is not None:
            self.channel.close()
        self.channel = grpc.insecure_channel(self.address)
        self.stub = driver_pb2_grpc.DriverStub(self.channel)
        return self

    @property
    def proc(self) -> subprocess.Popen:
        return self.spawn.procs[-1]  # type: ignore[attr-defined]

    @property
    def state_dir(self) -> Path:
        return self.run_dir / f"state-{self.host_id}"

    def kill9(self) -> None:
        proc = self.proc
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        proc.wait(10)

    def cleanup(self) -> subprocess.CompletedProcess:
        """`cnm-driver --cleanup` inside the host namespace."""
        return subprocess.run(
            [
                "nsenter",
                f"--net=/run/netns/{self.host_ns}",
                "--",
                str(BIN / "cnm-driver"),
                "--cleanup",
                "--redis-url",
                self.redis_url,
                "--host-id",
                self.host_id,
                "--state-dir",
                str(self.state_dir),
                "--log-format",
                "text",
            ],
            env={**os.environ, "CNM_NETNS_PREFIX": self.netns_prefix},
            capture_output=True,
            text=True,
            timeout=30,
        )

    def close(self) -> None:
        if self.channel is not None:
            self.channel.close()
        for proc in self.spawn.procs:  # type: ignore[attr-defined]
            self.spawn.stop(proc)  # type: ignore[attr-defined]
        self.cleanup()
        for name in netns.run("ip", "netns", "list", check=False).stdout.split("\n"):
            name = name.split(" ")[0]
            if name.startswith(self.netns_prefix):
                netns.delete(name)
        shutil.rmtree(self.run_dir, ignore_errors=True)

    # --- calls ---------------------------------------------------------------------------

    def network(
        self,
        subnet: str = "10.20.0.0/24",
        *,
        subnet6: str = "",
        options: dict[str, str] | None = None,
        internal: bool = False,
        name: str = "n1",
        driver: str = "bridge",
        network_id: str | None = None,
    ) -> str:
        nid = network_id or new_id()
        self.stub.CreateNetwork(
            network_request(nid, subnet, subnet6, options, internal, name, driver), timeout=T
        )
        return nid

    def sandbox(self, name: str = "c1", **kw) -> pb.Sandbox:
        return self.stub.CreateSandbox(
            pb.CreateSandboxRequest(sandbox_id=new_id(), name=name, hostname=name, **kw), timeout=T
        )

    def endpoint(
        self, nid: str, address: str = "", address6: str = "", name: str = "", **kw
    ) -> str:
        eid = new_id()
        self.stub.CreateEndpoint(
            pb.CreateEndpointRequest(
                network_id=nid,
                endpoint_id=eid,
                interface=pb.EndpointInterface(address=address, address_ipv6=address6),
                name=name,
                **kw,
            ),
            timeout=T,
        )
        return eid

    def join(self, nid: str, eid: str, sid: str) -> pb.JoinResponse:
        return self.stub.Join(
            pb.JoinRequest(network_id=nid, endpoint_id=eid, sandbox_id=sid), timeout=T
        )

    def leave(self, nid: str, eid: str, sid: str) -> None:
        self.stub.Leave(pb.LeaveRequest(network_id=nid, endpoint_id=eid, sandbox_id=sid), timeout=T)

    def attach(
        self, nid: str, address: str, name: str, address6: str = "", **kw
    ) -> tuple[pb.Sandbox, str]:
        """A new sandbox with one endpoint joined to `nid`: (sandbox, endpoint id)."""
        sb = self.sandbox(name, **kw)
        eid = self.endpoint(nid, address, address6, name=name)
        self.join(nid, eid, sb.sandbox_id)
        return sb, eid

    def host_exec(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess:
        return netns.exec_in(self.host_ns, *argv, check=check)


def network_request(
    nid: str,
    subnet: str,
    subnet6: str = "",
    options: dict[str, str] | None = None,
    internal: bool = False,
    name: str = "n1",
    driver: str = "bridge",
) -> pb.CreateNetworkRequest:
    v4 = []
    if subnet:
        net = ipaddress.ip_network(subnet)
        v4.append(pb.IpamData(pool=subnet, gateway=f"{net.network_address + 1}/{net.prefixlen}"))
    v6 = []
    if subnet6:
        net6 = ipaddress.ip_network(subnet6)
        v6.append(pb.IpamData(pool=subnet6, gateway=f"{net6.network_address + 1}/{net6.prefixlen}"))
    return pb.CreateNetworkRequest(
        network_id=nid,
        name=name,
        driver=driver,
        options=options or {},
        ipv4_data=v4,
        ipv6_data=v6,
        internal=internal,
        enable_ipv6=bool(subnet6),
    )


def netns_name(sb: pb.Sandbox) -> str:
    return Path(sb.key).name


def ping(sb: pb.Sandbox, address: str, wait: float = 1) -> bool:
    return netns.ping(netns_name(sb), address, wait=wait)


def links(ns: str) -> list[str]:
    out = netns.run("ip", "-n", ns, "-o", "link", "show").stdout
    return [line.split(": ")[1].split("@")[0] for line in out.splitlines() if ": " in line]


def default_routes(sb: pb.Sandbox, family: str = "-4") -> list[str]:
    out = netns.run("ip", "-n", netns_name(sb), family, "route", "show", "default").stdout
    return [line for line in out.splitlines() if line.strip()]


def wait_until(fn, timeout: float = 10.0, interval: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if fn():
            return True
        time.sleep(interval)
    return fn()
