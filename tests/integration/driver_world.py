"""A client of a driver-only World's host, and helpers to call it (tests of issue 4).

The host is built by `harness.world.driver_only` (one namespace with a
cnm-driver in it, no IPAM, no controller); `DriverHost` talks to that driver
over its unix socket with the generated stubs. Objects made through its helpers
are remembered, and `reset()` deletes them through the API (sandboxes, then
endpoints, then networks) and checks that the host's records are empty again,
so one driver can serve every test of a module (`shared_host`) while each test
still removes everything it made. Closing the world (`close()`) stops the
driver, runs `cnm-driver --cleanup` in the host and removes it.
"""

from __future__ import annotations

import ipaddress
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc
import redis

from cnm.driver.v1 import driver_pb2 as pb
from cnm.driver.v1 import driver_pb2_grpc
from driver_service.osl.query import TOMBSTONE_PREFIX
from harness import kernel_snapshot, netns
from harness.spawner import Spawner
from harness.wait import eventually
from harness.world import World, driver_only
from services.ids import new_id

T = 10  # every RPC's timeout, seconds


class DriverHost:
    """Host `host_id` of `world` and a client of its driver."""

    def __init__(self, world: World, host_id: str = "h1") -> None:
        self.world = world
        self.host_id = host_id
        self.channel: grpc.Channel | None = None
        self.stub: driver_pb2_grpc.DriverStub | None = None
        self.made_networks: list[str] = []
        self.made_endpoints: list[tuple[str, str]] = []
        self.made_sandboxes: list[str] = []
        if self.address:  # a driver already started
            self._connect()

    def _connect(self) -> None:
        if self.channel is not None:
            self.channel.close()
        self.channel = grpc.insecure_channel(self.address)
        self.stub = driver_pb2_grpc.DriverStub(self.channel)

    @property
    def host_ns(self) -> str:
        return self.world.hosts[self.host_id].netns

    @property
    def redis_url(self) -> str:
        return self.world.redis_url

    @property
    def netns_prefix(self) -> str:
        return self.world.netns_prefix

    @property
    def address(self) -> str:
        return self.world.hosts[self.host_id].driver

    @property
    def proc(self) -> subprocess.Popen:
        proc = self.world.hosts[self.host_id].proc
        assert proc is not None
        return proc

    @property
    def state_dir(self) -> Path:
        return self.world.state_dir(self.host_id)

    def start(self, env: dict[str, str] | None = None) -> DriverHost:
        """(Re)start the driver (`env`: for this start only) and reconnect to it."""
        self.world.start_host(self.host_id, env)
        self._connect()
        return self

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Stop the driver by its PID (SIGKILL: a crash)."""
        self.world.stop_host(self.host_id, sig)

    def kill9(self) -> None:
        self.stop(signal.SIGKILL)

    def cleanup(self) -> subprocess.CompletedProcess:
        """`cnm-driver --cleanup` inside the host namespace."""
        return self.world.cleanup_host(self.host_id)

    def reset(self) -> None:
        """Delete what the helpers made, through the API; then the records must be empty."""
        for sid in reversed(self.made_sandboxes):
            self.stub.DeleteSandbox(pb.DeleteSandboxRequest(sandbox_id=sid), timeout=T)
        for nid, eid in reversed(self.made_endpoints):
            self.stub.DeleteEndpoint(
                pb.DeleteEndpointRequest(network_id=nid, endpoint_id=eid), timeout=T
            )
        for nid in reversed(self.made_networks):
            self.stub.DeleteNetwork(pb.DeleteNetworkRequest(network_id=nid), timeout=T)
        self.made_sandboxes.clear()
        self.made_endpoints.clear()
        self.made_networks.clear()
        left = self.records()
        assert not any(left.values()), f"driver records left behind: {left}"
        self.wait_quiet()

    def wait_quiet(self, timeout: float = 10.0, quiet: float = 0.25) -> None:
        """Wait until the driver has had no child process (its background conntrack
        flushes, queued by Leave before it returned) for `quiet` seconds."""
        pid = self.proc.pid
        deadline = time.monotonic() + timeout
        calm_since = time.monotonic()
        while time.monotonic() < deadline:
            if kernel_snapshot._children(pid):
                calm_since = time.monotonic()
            elif time.monotonic() - calm_since >= quiet:
                return
            time.sleep(0.02)
        raise AssertionError("the driver still runs child processes")

    def reset_or_recover(self) -> None:
        """`reset()`; if that fails (the test broke something), wipe the host and restart
        its driver so the next test starts clean, then re-raise."""
        try:
            self.reset()
        except BaseException:
            self.stop()
            self.cleanup()
            self.made_sandboxes.clear()
            self.made_endpoints.clear()
            self.made_networks.clear()
            self.start()
            raise

    def records(self) -> dict[str, set[str]]:
        client = redis.Redis.from_url(self.redis_url, decode_responses=True)
        try:
            return {
                kind: client.smembers(f"cnm:driver:{self.host_id}:{kind}")
                for kind in ("networks", "endpoints", "sandboxes")
            }
        finally:
            client.close()

    def close(self) -> None:
        """The whole world goes: the driver, what cnm made in the host, the host."""
        if self.channel is not None:
            self.channel.close()
        self.world.close()

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
        self.made_networks.append(nid)
        self.stub.CreateNetwork(
            network_request(nid, subnet, subnet6, options, internal, name, driver), timeout=T
        )
        return nid

    def sandbox(self, name: str = "c1", **kw) -> pb.Sandbox:
        sid = new_id()
        self.made_sandboxes.append(sid)
        return self.stub.CreateSandbox(
            pb.CreateSandboxRequest(sandbox_id=sid, name=name, hostname=name, **kw), timeout=T
        )

    def endpoint(
        self, nid: str, address: str = "", address6: str = "", name: str = "", **kw
    ) -> str:
        eid = new_id()
        self.made_endpoints.append((nid, eid))
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


def ping(sb: pb.Sandbox, address: str, wait: float = 2) -> bool:
    # 2 s as harness/netns.ping: a first ping right after a join answered after
    # more than 1 s on a loaded machine (test_driver_recovery, once). Every
    # expected-silent ping passes its own shorter wait.
    return netns.ping(netns_name(sb), address, wait=wait)


def links(ns: str, settle: float = 5.0) -> list[str]:
    """The links of namespace `ns` once background deletions have finished.

    Leave renames a veth end `cnmgc<ifindex>` (down, detached) at once and a
    background thread deletes it a moment later; waiting here (up to `settle`
    seconds) checks that the deletion really happens, without racing it.
    """

    def read() -> list[str]:
        out = netns.run("ip", "-n", ns, "-o", "link", "show").stdout
        return [line.split(": ")[1].split("@")[0] for line in out.splitlines() if ": " in line]

    eventually(lambda: not any(n.startswith(TOMBSTONE_PREFIX) for n in read()), settle, 0.05)
    return read()


def default_routes(sb: pb.Sandbox, family: str = "-4") -> list[str]:
    out = netns.run("ip", "-n", netns_name(sb), family, "route", "show", "default").stdout
    return [line for line in out.splitlines() if line.strip()]


def hosts_text(sb: pb.Sandbox, *, has: tuple[str, ...] = (), lacks: tuple[str, ...] = ()) -> str:
    """A sandbox's hosts file once it contains every `has` and none of `lacks`.

    Peers' files are rewritten by the driver's background writer a moment after
    the Join/Leave that changed them; the sandbox's own file is current at once.
    """
    path = Path(sb.hosts_path)

    def ready() -> bool:
        text = path.read_text()
        return all(h in text for h in has) and not any(x in text for x in lacks)

    assert eventually(ready, timeout=5, interval=0.02), (
        f"{path} never had {has} without {lacks}:\n{path.read_text()}"
    )
    return path.read_text()


@contextmanager
def driver_host(
    spawn, redis_url: str, netns_prefix: str, host_id: str = "h1", *, start: bool = True
) -> Iterator[DriverHost]:
    """A driver-only world (`harness.world.driver_only`) and its client; not `start`:
    the test starts the driver (`DriverHost.start`)."""
    world = driver_only(spawn, redis_url, netns_prefix, host_id=host_id, start=start,
                        tmp_prefix="cnmdrv", sweep=True)  # fmt: skip
    host = DriverHost(world, host_id)  # a channel, nothing that can fail
    try:
        yield host
    finally:
        host.close()


@contextmanager
def shared_host(redis_url: str, netns_prefix: str, host_id: str = "h1") -> Iterator[DriverHost]:
    """`driver_host` for a whole module (see `DriverHost.reset`), with its own
    spawner (the `spawn` fixture is per test), on the session's Redis emptied
    first as the `redis_url` fixture empties it for a test: an earlier module's
    records of host `host_id` would otherwise be this driver's from its start (a
    controller test's null network named "none" is one the API cannot delete)."""
    client = redis.Redis.from_url(redis_url)
    try:
        client.flushall()
    finally:
        client.close()
    with driver_host(Spawner(), redis_url, netns_prefix, host_id) as host:
        yield host
