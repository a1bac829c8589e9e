"""cnm as a real stack: redis-server, cnm-ipam, cnm-controller on unix sockets,
cnm-driver inside cnm's host namespace; connect = one controller `Connect` call."""

from __future__ import annotations

import logging
import re
import subprocess
import sys
import time
from pathlib import Path

import grpc
import redis
from grpc_health.v1 import health_pb2, health_pb2_grpc

from cnm.controller.v1 import controller_pb2 as pb
from cnm.controller.v1 import controller_pb2_grpc
from cnm.types.v1 import types_pb2
from peers import netns
from peers.base import CONTAINER_PORT, Container, NetworkPlan, System, rss_kib
from peers.stats import key_patterns

log = logging.getLogger(__name__)

BIN = Path(sys.executable).parent
T = 30  # seconds: deadline of every RPC the benchmark makes


DRIVER_METRICS = "127.0.0.1:9464"  # in cnm's own host namespace: always free
_SCRAPE = "import sys, urllib.request; sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=30).read().decode())"  # noqa: E501


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_serving(address: str, proc: subprocess.Popen, timeout: float = 30) -> None:
    opts = [("grpc.initial_reconnect_backoff_ms", 50), ("grpc.max_reconnect_backoff_ms", 200)]
    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(address, options=opts) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"{proc.args} exited with {proc.returncode}")
            try:
                status = stub.Check(health_pb2.HealthCheckRequest(), timeout=1).status
                if status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.05)
    raise TimeoutError(f"{address} not SERVING after {timeout}s")


class Cnm(System):
    name = "cnm"

    def start(self) -> None:
        super().start()
        self.start_services()

    def start_services(self) -> None:
        """Redis, IPAM, the driver (in `host_ns`) and the controller, under `run_dir`."""
        d = self.run_dir
        self.redis_sock = d / "redis.sock"
        self.redis_url = f"unix://{self.redis_sock}"
        self.ipam = f"unix://{d}/ipam.sock"
        self.driver = f"unix://{d}/driver.sock"
        self.controller = f"unix://{d}/controller.sock"
        self.redis_proc = self._spawn(
            ["redis-server", "--port", "0", "--unixsocket", str(self.redis_sock), "--save", "",
             "--appendonly", "no", "--dir", str(d)], "redis",
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while not self.redis_sock.exists():
            if time.monotonic() > deadline or self.redis_proc.poll() is not None:
                raise RuntimeError("redis-server did not start")
            time.sleep(0.02)
        common = ["--redis-url", self.redis_url, "--log-format", "text"]
        # Prometheus metrics: IPAM and controller on loopback ports of the root
        # namespace, the driver on its host namespace's loopback.
        self.metrics = {"ipam": f"127.0.0.1:{free_port()}", "controller": f"127.0.0.1:{free_port()}",
                        "driver": DRIVER_METRICS}  # fmt: skip
        self.ipam_proc = self._spawn(
            [str(BIN / "cnm-ipam"), "--listen", self.ipam, *common, "--address-spaces", "bench",
             "--metrics-listen", self.metrics["ipam"]],
            "ipam",
        )  # fmt: skip
        # nsenter --net without --pid execs in place: the Popen's pid is the driver's.
        self.driver_proc = self._spawn(
            netns.in_netns(
                f"/run/netns/{self.host_ns}",
                [str(BIN / "cnm-driver"), "--listen", self.driver, *common, "--host-id",
                 f"{self.tag}-host", "--state-dir", str(d / "driver-state"),
                 "--metrics-listen", self.metrics["driver"]],
            ),
            "driver",
            env={"CNM_NETNS_PREFIX": f"{self.tag}x-"},
        )  # fmt: skip
        wait_serving(self.ipam, self.ipam_proc)
        wait_serving(self.driver, self.driver_proc)
        self.controller_proc = self._spawn(
            [
                str(BIN / "cnm-controller"),
                "--listen",
                self.controller,
                *common,
                "--ipam",
                self.ipam,
                "--metrics-listen",
                self.metrics["controller"],
            ],
            "controller",
        )
        wait_serving(self.controller, self.controller_proc)
        self.channel = grpc.insecure_channel(self.controller)
        self.stub = controller_pb2_grpc.ControllerStub(self.channel)
        self.redis = redis.Redis(unix_socket_path=str(self.redis_sock))

    def _spawn(self, argv: list[str], name: str, env: dict[str, str] | None = None):
        import os

        log_file = open(self.run_dir / f"{name}.log", "ab")  # noqa: SIM115 - lives with the process
        proc = subprocess.Popen(
            argv, stdout=log_file, stderr=log_file, env={**os.environ, **(env or {})}
        )
        log_file.close()
        self.procs.append(proc)
        return proc

    def scrape(self) -> dict[str, str]:
        """Each service's /metrics text ("" when it cannot be read)."""
        out = {}
        for service, address in self.metrics.items():
            argv = [sys.executable, "-c", _SCRAPE, f"http://{address}/metrics"]
            if service == "driver":
                argv = netns.in_netns(f"/run/netns/{self.host_ns}", argv)
            res = subprocess.run(argv, capture_output=True, text=True, timeout=60)
            out[service] = res.stdout if res.returncode == 0 else ""
        return out

    @property
    def service_pids(self) -> dict[str, int]:
        return {
            "cnm-ipam": self.ipam_proc.pid,
            "cnm-controller": self.controller_proc.pid,
            "cnm-driver": self.driver_proc.pid,
            "redis-server": self.redis_proc.pid,
        }

    # -------------------------------------------------------------- networks

    def net_name(self, plan: NetworkPlan) -> str:
        return f"{self.tag}-n{plan.index}"

    def create_network(self, plan: NetworkPlan) -> None:
        self.stub.CreateNetwork(
            pb.CreateNetworkRequest(
                name=self.net_name(plan),
                driver="bridge",
                ipam=pb.IpamSpec(
                    configs=[types_pb2.IpamConfig(subnet=str(plan.subnet), gateway=plan.gateway)]
                ),
            ),
            timeout=T,
        )

    def delete_network(self, plan: NetworkPlan) -> None:
        self.stub.DeleteNetwork(pb.DeleteNetworkRequest(id_or_name=self.net_name(plan)), timeout=T)

    # -------------------------------------------------------------- sandboxes

    def prepare(self, containers: list[Container]) -> None:
        """A sandbox per container on the namespace the runner made (external key)."""
        for c in containers:
            sb = self.stub.CreateSandbox(
                pb.CreateSandboxRequest(name=c.name, external_key=c.path), timeout=T
            )
            c.state["sandbox"] = sb.id

    def release(self, containers: list[Container]) -> None:
        for c in containers:
            if "sandbox" in c.state:
                self.stub.DeleteSandbox(
                    pb.DeleteSandboxRequest(id_or_name=c.state.pop("sandbox")), timeout=T
                )

    def connect(self, c: Container) -> float:
        request = pb.ConnectRequest(
            network=self.net_name(self.networks[c.network]),
            sandbox=c.state["sandbox"],
            spec=pb.EndpointSpec(
                port_bindings=[
                    types_pb2.PortBinding(
                        protocol=types_pb2.PROTOCOL_TCP,
                        host_port=c.host_port,
                        container_port=CONTAINER_PORT,
                    )
                ]
            ),
        )
        t0 = time.perf_counter()
        ep = self.stub.Connect(request, timeout=T)
        elapsed = time.perf_counter() - t0
        c.address = ep.ipv4_address.split("/")[0]
        c.gateway = ep.gateway
        if not ep.published_ports:
            raise RuntimeError(f"cnm: {c.name} connected without its published port")
        return elapsed

    def disconnect(self, c: Container) -> float:
        request = pb.DisconnectRequest(
            network=self.net_name(self.networks[c.network]), sandbox=c.state["sandbox"]
        )
        t0 = time.perf_counter()
        self.stub.Disconnect(request, timeout=T)
        return time.perf_counter() - t0

    # -------------------------------------------------------------- measures and checks

    def rss(self) -> dict[str, int]:
        """VmRSS (KiB) of every service process, by name."""
        return {name: rss_kib(pid) for name, pid in self.service_pids.items()}

    def resources(self) -> dict[str, object]:
        info = self.redis.info("memory")
        return {
            "rss_kib": self.rss(),
            "redis_used_memory": info["used_memory"],
            "redis_used_memory_rss": info["used_memory_rss"],
            "redis_keys": self.redis.dbsize(),
        }

    def redis_keys(self) -> list[str]:
        return sorted(k.decode() for k in self.redis.scan_iter(count=1000))

    def key_patterns(self) -> dict[str, int]:
        return key_patterns(self.redis_keys(), ids=[self.tag])

    def leftovers(self) -> list[str]:
        left = super().leftovers()
        # What a run leaves in Redis by design: the host record and its set, the
        # event stream, the controller's lease and host-state keys, the store's
        # epoch and liveness clock (store:epoch, :resumed, :last_beat). Anything else
        # (networks, endpoints, sandboxes, IPAM pools and addresses, ports,
        # request ids) is a leak of the run.
        expected = re.compile(
            r"^[^:]+:(controller:.*|events(:rev)?|host:.*|hosts|store:(epoch|resumed|last_beat))$"
        )
        for pattern, n in self.key_patterns().items():
            if not expected.match(pattern):
                left.append(f"redis {pattern} x{n}")
        return left

    def stop(self) -> list[str]:
        if hasattr(self, "channel"):
            self.channel.close()
        return super().stop()
