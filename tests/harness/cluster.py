"""A simulated cluster on one machine: N hosts as network namespaces on an underlay.

    underlay namespace ("<name>-ul"): bridge ul0
      |-- h1 (veth) ---- eth0 192.0.2.11/24 in namespace "<name>-h1": cnm-driver --host-id h1
      |-- h2 (veth) ---- eth0 192.0.2.12/24 in namespace "<name>-h2": cnm-driver --host-id h2
      ...
    root namespace: one Redis (given, or started here), cnm-ipam, cnm-controller,
                    all on unix sockets in the run directory

Each host's driver service runs inside its namespace (`nsenter --net`, as
`stack.start_driver` does) with `--advertise-addr` = its underlay address, so
VXLAN packets between hosts really cross the underlay bridge. Nothing is
created in the root namespace: the underlay bridge lives in a namespace of
its own. Hosts can be stopped (any signal), started again, and removed.

Two ways to use it:

- tests: `Cluster(spawn, redis_url, ...)` with the test's `spawn` fixture
  (processes are stopped by PID after the test); `close()` deletes what the
  test made through the API, runs `cnm-driver --cleanup` on every host and
  removes the namespaces, even after a failure;
- a shell (scripts/cluster-demo.sh): `python tests/harness/cluster.py up
  --dir DIR --hosts 3` builds a cluster whose processes outlive the command
  (their PIDs and namespaces are written to DIR/cluster.json), `... down --dir
  DIR` tears down exactly what that file lists.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import json
import os
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `harness` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import grpc  # noqa: E402

from cnm.controller.v1 import controller_pb2 as pb  # noqa: E402
from cnm.controller.v1 import controller_pb2_grpc  # noqa: E402
from harness import netns, stack  # noqa: E402
from harness.redis_proc import RedisProcess  # noqa: E402
from harness.spawner import Spawner, program  # noqa: E402
from harness.wait import eventually  # noqa: E402

T = 10  # seconds: the timeout of every RPC made here
STATE_FILE = "cluster.json"


@dataclass
class Host:
    id: str
    netns: str
    # Underlay address (the VTEP) and the name of its port on the underlay bridge.
    address: str
    port: str
    driver: str = ""
    proc: subprocess.Popen | None = None
    env: dict[str, str] = field(default_factory=dict)


class Cluster:
    def __init__(
        self,
        spawn,
        redis_url: str,
        *,
        name: str,
        netns_prefix: str,
        run_dir: Path | None = None,
        hosts: int = 3,
        underlay: str = "192.0.2.0/24",
        mtu: int = 1500,
        driver_env: dict[str, str] | None = None,
        controller_env: dict[str, str] | None = None,
    ) -> None:
        self.spawn = spawn
        self.redis_url = redis_url
        self.name = name
        self.netns_prefix = netns_prefix
        self.run_dir = run_dir or stack.short_tmp("cnmcl")
        self.mtu = mtu
        self.driver_env = dict(driver_env or {})
        self.controller_env = dict(controller_env or {})
        self.underlay_ns = f"{name}-ul"
        self.underlay_net = ipaddress.ip_network(underlay)
        self.hosts: dict[str, Host] = {}
        self.ipam = ""
        self.controller = ""
        self.procs: dict[str, subprocess.Popen] = {}
        self._channels: list[grpc.Channel] = []
        self._next = 1
        self._n = hosts
        self._closed = False

    # ------------------------------------------------------------------ building

    def build(self) -> Cluster:
        """Underlay, host namespaces, then the services. On failure, everything
        made so far is removed again before the error propagates."""
        try:
            netns.create(self.underlay_ns)
            self._ip("-n", self.underlay_ns, "link", "add", "ul0", "type", "bridge")
            self._ip("-n", self.underlay_ns, "link", "set", "ul0", "mtu", str(self.mtu), "up")
            for _ in range(self._n):
                self.add_host(start=False)
            self.ipam = stack.start_ipam(self.spawn, self.redis_url, self.run_dir)
            self.procs["ipam"] = self.spawn.procs[-1]
            self.controller = self._start_controller()
            for host in self.hosts.values():
                self.start_host(host.id)
        except BaseException:
            self.close()
            raise
        return self

    @staticmethod
    def _ip(*argv: str) -> None:
        netns.run("ip", *argv)

    def _start_controller(self) -> str:
        address = f"unix://{self.run_dir}/controller.sock"
        proc = self.spawn(
            [
                str(stack.BIN / "cnm-controller"),
                "--listen",
                address,
                "--redis-url",
                self.redis_url,
                "--ipam",
                self.ipam,
                "--log-format",
                "text",
            ],
            env=self.controller_env,
            stderr=open(self.run_dir / "controller.log", "ab"),  # noqa: SIM115 - closed with the process
        )
        self.procs["controller"] = proc
        stack.wait_serving(address, proc=proc)
        return address

    def add_host(self, host_id: str = "", *, start: bool = True, env: dict[str, str] | None = None):
        """A new host namespace plugged into the underlay (and its driver started)."""
        n = self._next
        self._next += 1
        host_id = host_id or f"h{n}"
        address = str(self.underlay_net.network_address + 10 + n)
        host = Host(
            id=host_id,
            netns=f"{self.name}-{host_id}",
            address=address,
            port=f"p{n}",
            env=dict(env or {}),
        )
        self.hosts[host_id] = host
        netns.create(host.netns)
        # Created inside the underlay namespace with its peer born in the host's:
        # the root namespace never sees either end.
        self._ip("-n", self.underlay_ns, "link", "add", host.port, "mtu", str(self.mtu),
                 "type", "veth", "peer", "name", "eth0", "netns", host.netns)  # fmt: skip
        self._ip("-n", self.underlay_ns, "link", "set", host.port, "master", "ul0", "up")
        prefix = self.underlay_net.prefixlen
        self._ip("-n", host.netns, "addr", "add", f"{address}/{prefix}", "dev", "eth0")
        # `mtu` on `link add` sets the first end only.
        self._ip("-n", host.netns, "link", "set", "eth0", "mtu", str(self.mtu), "up")
        if start:
            self.start_host(host_id)
        return host

    # ------------------------------------------------------------------ host processes

    def start_host(self, host_id: str) -> str:
        """(Re)start a host's driver service; returns its address once SERVING."""
        host = self.hosts[host_id]
        host.driver = stack.start_driver(
            self.spawn,
            self.redis_url,
            self.run_dir,
            host_id=host.id,
            netns_name=host.netns,
            netns_prefix=self.netns_prefix,
            advertise_addr=host.address,
            extra=["--log-format", "text"],
            env={**self.driver_env, **host.env},
        )
        host.proc = self.spawn.procs[-1]
        return host.driver

    def stop_host(self, host_id: str, sig: int = signal.SIGTERM) -> None:
        """Stop a host's driver service by its PID (SIGKILL: a crash)."""
        host = self.hosts[host_id]
        if host.proc is not None:
            self.spawn.stop(host.proc, sig)
            host.proc = None

    def cleanup_host(self, host_id: str) -> subprocess.CompletedProcess:
        """`cnm-driver --cleanup` inside the host's namespace (its service stopped)."""
        host = self.hosts[host_id]
        return subprocess.run(
            ["nsenter", f"--net=/run/netns/{host.netns}", "--", str(stack.BIN / "cnm-driver"),
             "--cleanup", "--redis-url", self.redis_url, "--host-id", host.id,
             "--state-dir", str(self.run_dir / f"state-{host.id}")],
            env={**os.environ, "CNM_NETNS_PREFIX": self.netns_prefix},
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip

    def remove_host(self, host_id: str) -> None:
        """Stop the host, remove what cnm made there and the host itself."""
        host = self.hosts[host_id]
        self.stop_host(host_id)
        self.cleanup_host(host_id)
        netns.run("ip", "-n", self.underlay_ns, "link", "del", host.port, check=False)
        netns.delete(host.netns)
        del self.hosts[host_id]

    # ------------------------------------------------------------------ clients

    def stub(self) -> controller_pb2_grpc.ControllerStub:
        channel = grpc.insecure_channel(self.controller)
        self._channels.append(channel)
        return controller_pb2_grpc.ControllerStub(channel)

    def host_exec(self, host_id: str, *argv: str, check: bool = True):
        return netns.exec_in(self.hosts[host_id].netns, *argv, check=check)

    # ------------------------------------------------------------------ teardown

    def delete_everything(self) -> None:
        """Sandboxes, endpoints and networks, through the API (best effort)."""
        if not self.controller:
            return
        c = self.stub()
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

    def close(self) -> None:
        """Everything this cluster made goes, whatever state it is in. Idempotent."""
        if self._closed:
            return
        self._closed = True
        errors: list[str] = []
        try:
            self.delete_everything()
        except Exception as e:  # noqa: BLE001 - teardown goes on
            errors.append(f"API clean-up: {e}")
        for channel in self._channels:
            channel.close()
        for host_id in list(self.hosts):
            self.stop_host(host_id)
        for name in ("controller", "ipam"):
            proc = self.procs.pop(name, None)
            if proc is not None:
                self.spawn.stop(proc)
        for host_id in list(self.hosts):
            res = self.cleanup_host(host_id)
            if res.returncode != 0:
                errors.append(f"cleanup of {host_id}: {res.stderr.strip()[-500:]}")
            netns.delete(self.hosts[host_id].netns)
        netns.delete(self.underlay_ns)
        # Namespaces under cnm's prefix that survived every host's --cleanup are a
        # bug worth failing for; they are removed all the same.
        swept = []
        for line in netns.run("ip", "netns", "list", check=False).stdout.splitlines():
            ns = line.split()[0] if line.strip() else ""
            if ns.startswith(self.netns_prefix):
                netns.delete(ns)
                swept.append(ns)
        if swept:
            errors.append(f"namespaces left after clean-up: {', '.join(swept)}")
        shutil.rmtree(self.run_dir, ignore_errors=True)
        if errors:
            raise RuntimeError("; ".join(errors))

    # ------------------------------------------------------------------ CLI state

    def state(self) -> dict:
        return {
            "name": self.name,
            "netns_prefix": self.netns_prefix,
            "redis_url": self.redis_url,
            "controller": self.controller,
            "underlay_ns": self.underlay_ns,
            "hosts": {
                h.id: {"netns": h.netns, "address": h.address, "driver": h.driver}
                for h in self.hosts.values()
            },
            "procs": [
                {"pid": p.pid, "argv0": program(p.args)}
                for p in self.spawn.procs
                if p.poll() is None
            ],
        }


# ---------------------------------------------------------------------- command line


def _start_redis(spawn: Spawner, run_dir: Path) -> str:
    """A private redis-server with default notification settings (none): the
    overlay must work with a plain Redis."""
    return RedisProcess(spawn, persistent=False, workdir=run_dir).start().url


def _ours(pid: int, argv0: str) -> bool:
    """True when `pid` still runs the program we started (not a reused PID)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
    except OSError:
        return False
    # redis-server rewrites its command line ("redis-server unixsocket:..."): a substring test.
    return argv0.encode() in cmdline


def _stop_pid(pid: int, argv0: str, timeout: float = 5) -> None:
    if not _ours(pid, argv0):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    if not eventually(lambda: not _ours(pid, argv0), timeout=timeout, interval=0.05):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def cmd_up(args: argparse.Namespace) -> int:
    run_dir = Path(args.dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    spawn = Spawner(log_dir=run_dir)
    redis_url = args.redis_url or _start_redis(spawn, run_dir)
    prefix = f"{args.name}-"
    cluster = Cluster(
        spawn, redis_url, name=args.name, netns_prefix=prefix, run_dir=run_dir, hosts=args.hosts
    )
    # Written before anything is built, and again after: `down` can always clean up.
    write = lambda: (run_dir / STATE_FILE).write_text(json.dumps(cluster.state(), indent=2))  # noqa: E731
    write()
    try:
        cluster.build()
    finally:
        write()
    print(json.dumps(cluster.state(), indent=2))
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    run_dir = Path(args.dir)
    path = run_dir / STATE_FILE
    if not path.exists():
        return 0
    state = json.loads(path.read_text())
    spawn = Spawner()
    cluster = Cluster(
        spawn,
        state["redis_url"],
        name=state["name"],
        netns_prefix=state["netns_prefix"],
        run_dir=run_dir,
        hosts=0,
    )
    cluster.controller = state.get("controller", "")
    for host_id, h in state.get("hosts", {}).items():
        cluster.hosts[host_id] = Host(id=host_id, netns=h["netns"], address=h["address"], port="")
    if cluster.controller and Path(cluster.controller.removeprefix("unix://")).exists():
        with contextlib.suppress(Exception):
            cluster.delete_everything()
    # Drivers, controller, IPAM, then Redis: the reverse of their start.
    for proc in reversed(state.get("procs", [])):
        _stop_pid(proc["pid"], proc["argv0"])
    cluster.controller = ""
    try:
        cluster.close()
    except RuntimeError as e:
        print(f"cluster down: {e}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="cluster.py", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    up = sub.add_parser("up", help="build a cluster whose processes outlive this command")
    up.add_argument("--dir", required=True, help="run directory (sockets, logs, cluster.json)")
    up.add_argument("--hosts", type=int, default=3)
    up.add_argument("--name", default="cnmdemo", help="prefix of every namespace made")
    up.add_argument("--redis-url", default="", help="use this Redis instead of starting one")
    down = sub.add_parser("down", help="tear down what `up --dir DIR` built")
    down.add_argument("--dir", required=True)
    args = p.parse_args(argv)
    return cmd_up(args) if args.cmd == "up" else cmd_down(args)


if __name__ == "__main__":
    raise SystemExit(main())
