"""A real cnm world for the controller's integration tests.

Redis (the session's), the IPAM service and controller(s) in the root
namespace on unix sockets, and one driver service per test "host", each
inside its own fresh network namespace. Everything is started through the
test's `spawn` fixture (stopped by PID afterwards); `cleanup()` deletes every
sandbox and network through the API first, so the driver removes its kernel
state even when the test failed halfway.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from cnm.controller.v1 import controller_pb2 as pb
from cnm.controller.v1 import controller_pb2_grpc
from driver_service.osl.query import TOMBSTONE_PREFIX
from harness import stack
from harness.netns import exec_in

BIN = Path(sys.executable).parent
T = 10  # seconds: the timeout= of every RPC in these tests


@dataclass
class World:
    spawn: object
    redis_url: str
    netns_prefix: str
    run_dir: Path
    ipam: str = ""
    controllers: dict[str, str] = field(default_factory=dict)
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)
    drivers: dict[str, str] = field(default_factory=dict)
    host_netns: dict[str, str] = field(default_factory=dict)
    channels: list[grpc.Channel] = field(default_factory=list)

    # ------------------------------------------------------------------ processes

    def start_ipam(self, env: dict[str, str] | None = None) -> str:
        self.ipam = stack.start_ipam(self.spawn, self.redis_url, self.run_dir, env=env)
        return self.ipam

    def start_controller(self, name: str = "controller", env: dict[str, str] | None = None) -> str:
        """A controller process; its Popen is kept (for kill -9 tests)."""
        address = f"unix://{self.run_dir}/{name}.sock"
        proc = self.spawn(
            [
                str(BIN / "cnm-controller"),
                "--listen",
                address,
                "--redis-url",
                self.redis_url,
                "--ipam",
                self.ipam,
                "--log-format",
                "text",
            ],
            # Fast failure detection so crash tests take seconds, not minutes.
            env={"CNM_INSTANCE_TTL": "1.5", "CNM_RECONCILE_INTERVAL": "0.3", **(env or {})},
            stderr=open(self.run_dir / f"{name}.log", "ab"),  # noqa: SIM115 - closed with the process
        )
        self.procs[name] = proc
        stack.wait_serving(address, proc=proc)
        self.controllers[name] = address
        return address

    def start_driver(self, host_id: str, netns_name: str, **kw) -> str:
        self.host_netns[host_id] = netns_name
        address = stack.start_driver(
            self.spawn,
            self.redis_url,
            self.run_dir,
            host_id=host_id,
            netns_name=netns_name,
            netns_prefix=self.netns_prefix,
            **kw,
        )
        self.drivers[host_id] = address
        self.procs[f"driver-{host_id}"] = self.spawn.procs[-1]
        return address

    def stop(self, name: str, sig: int = signal.SIGTERM) -> None:
        self.spawn.stop(self.procs[name], sig)

    # ------------------------------------------------------------------ clients

    def stub(self, name: str = "controller") -> controller_pb2_grpc.ControllerStub:
        channel = grpc.insecure_channel(self.controllers[name])
        self.channels.append(channel)
        return controller_pb2_grpc.ControllerStub(channel)

    def close(self) -> None:
        for channel in self.channels:
            channel.close()

    # ------------------------------------------------------------------ teardown

    def cleanup(self, stub: controller_pb2_grpc.ControllerStub | None) -> None:
        """Everything made through the API is deleted through the API (best effort)."""
        if stub is not None:
            with contextlib.suppress(grpc.RpcError):
                stub.GarbageCollect(pb.GarbageCollectRequest(), timeout=60)
            with contextlib.suppress(grpc.RpcError):
                for ep in stub.ListEndpoints(pb.ListEndpointsRequest(), timeout=T).endpoints:
                    with contextlib.suppress(grpc.RpcError):
                        stub.DeleteEndpoint(pb.DeleteEndpointRequest(id=ep.id), timeout=T)
            with contextlib.suppress(grpc.RpcError):
                for net in stub.ListNetworks(pb.ListNetworksRequest(), timeout=T).networks:
                    with contextlib.suppress(grpc.RpcError):
                        stub.DeleteNetwork(pb.DeleteNetworkRequest(id_or_name=net.id), timeout=T)
        self.close()


def sandbox_netns(sandbox: pb.Sandbox) -> str:
    """`ip netns exec` name of a sandbox: its key is /run/netns/<name>."""
    assert sandbox.key.startswith("/run/netns/"), sandbox.key
    return sandbox.key.rsplit("/", 1)[1]


def addresses_in(netns_name: str) -> str:
    """`ip -o addr` of a namespace without the driver's tombstones: a left veth is
    renamed cnmgc<n> and set down at once, but deleted (with its IPv4 address) by
    a background thread a moment later (driver_service/osl/reaper.py)."""
    out = exec_in(netns_name, "ip", "-o", "addr", "show").stdout
    return "".join(
        line for line in out.splitlines(keepends=True)
        if not line.split()[1].startswith(TOMBSTONE_PREFIX)
    )  # fmt: skip


def ping_all(src_netns: str, addresses: list[str], timeout: float = 1) -> list[str]:
    """Addresses that do NOT answer a ping from `src_netns` (one process for all).
    A silent address gets a second try with a longer wait: on a loaded machine
    one of 200 first pings can miss its 1 s (ARP resolution included)."""
    wait = int(max(1, timeout))
    script = "; ".join(
        f"ping -c1 -W{wait} -q {a} >/dev/null 2>&1 || ping -c1 -W{wait + 2} -q {a} >/dev/null 2>&1"
        f" || echo {a}"
        for a in addresses
    )
    res = exec_in(src_netns, "sh", "-c", script, check=False, timeout=30 + 4 * len(addresses))
    return res.stdout.split()


def remove_run_dir(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


# Keys that change by themselves (heartbeats, liveness, leases, the event log).
_VOLATILE = ("host:", "controller:", "events", "store:last_beat")


def snapshot(redis_url: str, prefix: str = "cnm") -> dict[str, object]:
    """Every stored fact except the volatile ones, type-aware, comparable with ==."""
    import redis

    client = redis.Redis.from_url(redis_url, decode_responses=False)
    out: dict[str, object] = {}
    try:
        for raw in client.scan_iter(match=f"{prefix}:*", count=1000):
            key = raw.decode()
            if key[len(prefix) + 1 :].startswith(_VOLATILE):
                continue
            kind = client.type(raw).decode()
            if kind == "string":
                out[key] = client.get(raw)
            elif kind == "hash":
                out[key] = client.hgetall(raw)
            elif kind == "set":
                out[key] = client.smembers(raw)
            elif kind == "zset":
                out[key] = client.zrange(raw, 0, -1, withscores=True)
            elif kind == "list":
                out[key] = client.lrange(raw, 0, -1)
            else:
                out[key] = kind
    finally:
        client.close()
    return out


def kernel_view(host_netns: list[str], tag: str) -> dict[str, object]:
    """Links of each host namespace and the tagged namespaces that exist."""
    from harness.netns import run

    view: dict[str, object] = {
        "netns": sorted(
            line.split()[0]
            for line in run("ip", "netns", "list").stdout.splitlines()
            if tag in line
        )
    }
    for name in host_netns:
        links = run("ip", "-n", name, "-o", "link", "show").stdout.splitlines()
        view[name] = sorted(line.split(": ")[1].split("@")[0] for line in links)
    return view
