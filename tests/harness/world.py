"""The one way a test builds its world of cnm: hosts, Redis, service processes.

    World(spawn, redis_url, netns_prefix, ...)
      hosts: each a network namespace with a cnm-driver in it (`nsenter --net`);
             a fresh namespace made by the world (on the underlay bridge when the
             world has one) or one the test already has (`netns=`)
      root namespace: cnm-ipam and cnm-controller(s), on unix sockets in the run dir
      underlay (optional): namespace "<name>-ul" with bridge ul0; each host's eth0
             (192.0.2.10+n/24) is plugged into it, so VXLAN between hosts really
             crosses a bridge; nothing is made in the root namespace

    w = World(spawn, redis_url, netns_prefix).add_host("h1", netns=netns_host).build()
    w.stub().CreateNetwork(...); w.stop_host("h1", SIGKILL); w.start_host("h1")
    w.close()

Redis is the caller's (the `redis_url` fixture, or a `harness.redis_proc.RedisProcess`).
Every process goes through `spawn` (harness.spawner: stopped by PID). `close()`
removes everything, whatever state the world is in: what was made through the
API is deleted through the API, the processes are stopped, `cnm-driver
--cleanup` runs in every namespace the world made, then those namespaces, the
underlay and the run directory go. Named configurations: `single_host`,
`cluster` and `driver_only` (a host's driver alone) below;
tests/harness/cluster.py is the shell's front end (scripts/cluster-demo.sh).
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import shutil
import signal
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from cnm.controller.v1 import controller_pb2 as pb
from cnm.controller.v1 import controller_pb2_grpc
from harness import kernel_snapshot, stack
from harness import netns as _netns  # `netns` is a parameter name here

T = 10  # seconds: the timeout of every RPC made here
# Controllers that notice a dead peer within seconds: crash tests take seconds, not minutes.
FAST_FAILOVER = {"CNM_INSTANCE_TTL": "1.5", "CNM_RECONCILE_INTERVAL": "0.3"}


@dataclass
class Host:
    id: str
    netns: str
    owned: bool  # the namespace was made (and is removed) by the world
    # Underlay address (the VTEP) and its port on the underlay bridge; "" off the underlay.
    address: str = ""
    port: str = ""
    driver: str = ""  # the driver service's address
    proc: subprocess.Popen | None = None
    env: dict[str, str] = field(default_factory=dict)
    extra: list[str] = field(default_factory=list)


class World:
    def __init__(
        self,
        spawn,
        redis_url: str,
        netns_prefix: str,
        *,
        name: str = "",
        run_dir: Path | None = None,
        tmp_prefix: str = "cnm",
        underlay: str = "",
        mtu: int = 1500,
        driver_env: dict[str, str] | None = None,
        driver_args: list[str] | None = None,
        controller_env: dict[str, str] | None = None,
        services_netns: str = "",
        sweep: bool = False,
        tls: stack.Tls | None = None,
    ) -> None:
        """`underlay`: a subnet ("192.0.2.0/24") for hosts on an underlay bridge;
        `services_netns`: run IPAM and the controllers in that namespace instead
        of the root one (where a Redis only reachable there is);
        `tls`: every service on TCP 127.0.0.1 of its namespace with mutual TLS
        instead of a unix socket (its API is then out of `stub()`'s reach);
        `sweep`: at close, remove (and complain about) every namespace under
        `netns_prefix` still there (only for a world alone in its test)."""
        self.spawn = spawn
        self.redis_url = redis_url
        self.netns_prefix = netns_prefix
        self.name = name or f"cnmtest-{kernel_snapshot.TEST_TAG}-{uuid.uuid4().hex[:6]}"
        self.run_dir = run_dir or stack.short_tmp(tmp_prefix)
        self.mtu = mtu
        self.driver_env = dict(driver_env or {})
        self.driver_args = list(driver_args or [])
        self.controller_env = dict(controller_env or {})
        self.services_netns = services_netns
        self.sweep = sweep
        self.tls = tls
        self._ports: dict[str, int] = {}  # with tls: each service's port, by name
        self.underlay_net = ipaddress.ip_network(underlay) if underlay else None
        self.underlay_ns = f"{self.name}-ul" if underlay else ""
        self._underlay_made = False
        self.hosts: dict[str, Host] = {}
        self.ipam = ""
        self.controllers: dict[str, str] = {}
        self.procs: dict[str, subprocess.Popen] = {}  # ipam and controllers, by name
        self.channels: list[grpc.Channel] = []
        self._next = 1
        self._closed = False

    @property
    def controller(self) -> str:
        """The address of the first controller started."""
        return next(iter(self.controllers.values()), "")

    # ------------------------------------------------------------------ building

    def build(self, hosts: int = 0) -> World:
        """`hosts` more fresh hosts, IPAM and a controller. On failure, everything
        made so far is removed again before the error propagates."""
        try:
            for _ in range(hosts):
                self.add_host(start=False)
            self.start_ipam()
            for host in self.hosts.values():
                if host.proc is None:
                    self.start_host(host.id)
            self.start_controller()
        except BaseException:
            self.close()
            raise
        return self

    def add_host(
        self,
        host_id: str = "",
        *,
        netns: str = "",
        start: bool = True,
        env: dict[str, str] | None = None,
        extra: list[str] | None = None,
    ) -> World:
        """A host: namespace `netns` (the test's), or a fresh one the world makes
        (plugged into the underlay when there is one); its driver started unless
        not `start`. `env`/`extra`: this host's driver's environment/arguments."""
        n = self._next
        self._next += 1
        host_id = host_id or f"h{n}"
        host = Host(host_id, netns or f"{self.name}-{host_id}", owned=not netns,
                    env=dict(env or {}), extra=list(extra or []))  # fmt: skip
        self.hosts[host_id] = host
        if host.owned:
            _netns.create(host.netns)
            if self.underlay_net is not None:
                self._plug_into_underlay(host, n)
        if start:
            self.start_host(host_id)
        return self

    def _plug_into_underlay(self, host: Host, n: int) -> None:
        assert self.underlay_net is not None
        ip = lambda *argv: _netns.run("ip", *argv)  # noqa: E731
        if not self._underlay_made:
            self._underlay_made = True
            _netns.create(self.underlay_ns)
            ip("-n", self.underlay_ns, "link", "add", "ul0", "type", "bridge")
            ip("-n", self.underlay_ns, "link", "set", "ul0", "mtu", str(self.mtu), "up")
        host.address = str(self.underlay_net.network_address + 10 + n)
        host.port = f"p{n}"
        # Created inside the underlay namespace with its peer born in the host's:
        # the root namespace never sees either end.
        ip("-n", self.underlay_ns, "link", "add", host.port, "mtu", str(self.mtu),
           "type", "veth", "peer", "name", "eth0", "netns", host.netns)  # fmt: skip
        ip("-n", self.underlay_ns, "link", "set", host.port, "master", "ul0", "up")
        prefix = self.underlay_net.prefixlen
        ip("-n", host.netns, "addr", "add", f"{host.address}/{prefix}", "dev", "eth0")
        # `mtu` on `link add` sets the first end only.
        ip("-n", host.netns, "link", "set", "eth0", "mtu", str(self.mtu), "up")

    # ------------------------------------------------------------------ processes

    def _listen(self, service: str) -> str:
        """Where `service` listens: "" (a unix socket in the run dir, the default),
        or with `tls` its own port on 127.0.0.1, the same at every restart."""
        if self.tls is None:
            return ""
        port = self._ports.setdefault(service, self.tls.first_port + len(self._ports))
        return f"127.0.0.1:{port}"

    def start_ipam(self, env: dict[str, str] | None = None, *, address_spaces: bool = True) -> str:
        """`address_spaces`: declare the tests' extra spaces (stack.TEST_ADDRESS_SPACES)."""
        self.ipam = stack.start_ipam(
            self.spawn, self.redis_url, self.run_dir, env=env, address_spaces=address_spaces,
            netns_name=self.services_netns, listen=self._listen("ipam"), tls=self.tls,
        )  # fmt: skip
        self.procs["ipam"] = self.spawn.procs[-1]
        return self.ipam

    def start_controller(self, name: str = "controller", env: dict[str, str] | None = None) -> str:
        """A controller process (its log in the run dir); its Popen is `procs[name]`."""
        address = self._listen(name) or f"unix://{self.run_dir}/{name}.sock"
        argv = [str(stack.BIN / "cnm-controller"), "--listen", address,
                "--redis-url", self.redis_url, "--ipam", self.ipam, "--log-format", "text",
                *(self.tls.server() if self.tls else [])]  # fmt: skip
        if self.services_netns:
            argv = ["nsenter", f"--net=/run/netns/{self.services_netns}", "--", *argv]
        with open(self.run_dir / f"{name}.log", "ab") as log:
            proc = self.spawn(
                argv,
                env={**self.controller_env, **(env or {})},
                stderr=log,
            )  # fmt: skip
        self.procs[name] = proc
        stack.await_serving(address, proc, self.services_netns, self.tls)
        self.controllers[name] = address
        return address

    def log_tail(self, name: str = "controller", lines: int = 40) -> str:
        """The last lines of a controller's log (for a failure message: the run dir
        and its logs go with the world)."""
        try:
            text = (self.run_dir / f"{name}.log").read_text(errors="replace")
        except OSError as e:
            return f"({name}.log: {e.strerror})"
        return "\n".join(text.splitlines()[-lines:])

    def start_host(self, host_id: str, env: dict[str, str] | None = None) -> str:
        """(Re)start a host's driver service; returns its address once SERVING.
        `env`: for this start only, over the world's and the host's."""
        host = self.hosts[host_id]
        host.driver = stack.start_driver(
            self.spawn,
            self.redis_url,
            self.run_dir,
            host_id=host.id,
            netns_name=host.netns,
            netns_prefix=self.netns_prefix,
            advertise_addr=host.address,
            extra=[*self.driver_args, *host.extra],
            env={**self.driver_env, **host.env, **(env or {})},
            listen=self._listen(f"driver-{host.id}"),
            tls=self.tls,
        )
        host.proc = self.spawn.procs[-1]
        return host.driver

    def stop_host(self, host_id: str, sig: int = signal.SIGTERM) -> None:
        """Stop a host's driver service by its PID (SIGKILL: a crash)."""
        host = self.hosts[host_id]
        if host.proc is not None:
            self.spawn.stop(host.proc, sig)

    def stop(self, name: str, sig: int = signal.SIGTERM) -> None:
        """Stop IPAM or a controller (by the name it was started with), by PID."""
        self.spawn.stop(self.procs[name], sig)

    def cleanup_host(self, host_id: str) -> subprocess.CompletedProcess:
        """`cnm-driver --cleanup` inside the host's namespace (its service stopped)."""
        host = self.hosts[host_id]
        return subprocess.run(
            ["nsenter", f"--net=/run/netns/{host.netns}", "--", str(stack.BIN / "cnm-driver"),
             "--cleanup", "--redis-url", self.redis_url, "--host-id", host.id,
             "--state-dir", str(self.state_dir(host_id)), "--log-format", "text"],
            env={**os.environ, "CNM_NETNS_PREFIX": self.netns_prefix},
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip

    def state_dir(self, host_id: str) -> Path:
        return self.run_dir / f"state-{host_id}"

    def remove_host(self, host_id: str) -> None:
        """Stop the host, remove what cnm made there and the host itself."""
        host = self.hosts[host_id]
        self.stop_host(host_id)
        self.cleanup_host(host_id)
        if host.port:
            _netns.run("ip", "-n", self.underlay_ns, "link", "del", host.port, check=False)
        if host.owned:
            _netns.delete(host.netns)
        del self.hosts[host_id]

    # ------------------------------------------------------------------ clients

    def stub(self, name: str = "") -> controller_pb2_grpc.ControllerStub:
        """A controller client (the first controller, or the one called `name`)."""
        channel = grpc.insecure_channel(self.controllers[name] if name else self.controller)
        self.channels.append(channel)
        return controller_pb2_grpc.ControllerStub(channel)

    def host_exec(self, host_id: str, *argv: str, check: bool = True):
        return _netns.exec_in(self.hosts[host_id].netns, *argv, check=check)

    # ------------------------------------------------------------------ teardown

    def delete_everything(self) -> None:
        """Sandboxes, endpoints and networks, through the API (best effort). A
        controller in `controllers` that this world did not start is taken as live.
        With `tls` nothing: the API is out of reach, the test deletes what it made."""
        if self.tls is not None:
            return
        live = [n for n in self.controllers if n not in self.procs or self.procs[n].poll() is None]
        if not live:
            return
        c = self.stub(live[0])
        with contextlib.suppress(grpc.RpcError):
            c.GarbageCollect(pb.GarbageCollectRequest(), timeout=60)  # every sandbox
        with contextlib.suppress(grpc.RpcError):
            for sb in c.ListSandboxes(pb.ListSandboxesRequest(), timeout=T).sandboxes:
                with contextlib.suppress(grpc.RpcError):
                    c.DeleteSandbox(pb.DeleteSandboxRequest(id_or_name=sb.id), timeout=T)
        with contextlib.suppress(grpc.RpcError):
            for ep in c.ListEndpoints(pb.ListEndpointsRequest(), timeout=T).endpoints:
                with contextlib.suppress(grpc.RpcError):
                    c.DeleteEndpoint(pb.DeleteEndpointRequest(id=ep.id), timeout=T)
        with contextlib.suppress(grpc.RpcError):
            for net in c.ListNetworks(pb.ListNetworksRequest(), timeout=T).networks:
                with contextlib.suppress(grpc.RpcError):
                    c.DeleteNetwork(pb.DeleteNetworkRequest(id_or_name=net.id), timeout=T)

    def close(self, *, through_api: bool = True) -> None:
        """Everything this world made goes, whatever state it is in. Idempotent.
        Not `through_api`: the caller removes what the API made another way."""
        if self._closed:
            return
        self._closed = True
        errors: list[str] = []
        try:
            if through_api:
                self.delete_everything()
        except Exception as e:  # noqa: BLE001 - teardown goes on
            errors.append(f"API clean-up: {e}")
        for channel in self.channels:
            channel.close()
        for host_id in list(self.hosts):
            self.stop_host(host_id)
        for proc in reversed(self.procs.values()):
            self.spawn.stop(proc)
        for host in self.hosts.values():
            if host.owned:
                res = self.cleanup_host(host.id)
                if res.returncode != 0:
                    errors.append(f"cleanup of {host.id}: {res.stderr.strip()[-500:]}")
                _netns.delete(host.netns)
        if self._underlay_made:
            _netns.delete(self.underlay_ns)
        if self.sweep:
            # Namespaces under cnm's prefix that survived every host's --cleanup are a
            # bug worth failing for; they are removed all the same.
            swept = []
            for line in _netns.run("ip", "netns", "list", check=False).stdout.splitlines():
                ns = line.split()[0] if line.strip() else ""
                if ns.startswith(self.netns_prefix):
                    _netns.delete(ns)
                    swept.append(ns)
            if swept:
                errors.append(f"namespaces left after clean-up: {', '.join(swept)}")
        shutil.rmtree(self.run_dir, ignore_errors=True)
        if errors:
            raise RuntimeError("; ".join(errors))


# ---------------------------------------------------------------------- named configurations


@contextlib.contextmanager
def single_host(
    spawn,
    redis_url: str,
    host_ns: str,
    netns_prefix: str,
    *,
    host_id: str = "h1",
    host_env: dict[str, str] | None = None,
    **kw,
) -> Iterator[World]:
    """One host's cnm: IPAM, a driver (host `host_id`, in the test's namespace
    `host_ns`, with `host_env`) and a controller; `kw`: World's options. Whatever
    the test left is released through the controller afterwards."""
    w = World(spawn, redis_url, netns_prefix, **kw)
    try:
        yield w.add_host(host_id, netns=host_ns, start=False, env=host_env).build()
    finally:
        w.close()


def cluster(spawn, redis_url: str, *, name: str, netns_prefix: str, hosts: int = 3, **kw) -> World:
    """`hosts` hosts on an underlay bridge (VXLAN between them), IPAM and a
    controller; `kw`: World's options. Built; the caller closes it."""
    kw.setdefault("underlay", "192.0.2.0/24")
    kw.setdefault("driver_args", ["--log-format", "text"])
    kw.setdefault("tmp_prefix", "cnmcl")
    return World(spawn, redis_url, netns_prefix, name=name, sweep=True, **kw).build(hosts)


def driver_only(
    spawn, redis_url: str, netns_prefix: str, *, host_id: str = "h1", start: bool = True, **kw
) -> World:
    """One fresh host with its driver service and nothing else (no IPAM, no
    controller), for tests that call the driver directly
    (tests/integration/driver_world.py); not `start`: the test starts the driver
    (`start_host`); `kw`: World's options. Built; the caller closes it (which runs
    `cnm-driver --cleanup` in the host)."""
    w = World(spawn, redis_url, netns_prefix, **kw)
    try:
        return w.add_host(host_id, start=start)
    except BaseException:
        w.close()
        raise
