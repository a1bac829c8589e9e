"""Start cnm service processes for integration tests, and wait for them.

Each starter runs the real console script from the venv through the test's
`spawn` fixture (so it is stopped by PID after the test) and returns the
service's address once its health check says SERVING. These are the low-level
starters: a test's world (hosts, IPAM, controllers) is built by harness/world.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from harness.wait import until

BIN = Path(sys.executable).parent


def wait_serving(address: str, service: str = "", timeout: float = 40.0, proc=None) -> None:
    """Blocks until `address` reports SERVING for `service` ("" = whole process).

    The default deadline is generous: at load 12 on 2 cores a driver took over 15 s to start."""
    target = address if not address.startswith("/") else f"unix://{address}"
    deadline = time.monotonic() + timeout
    last = "no answer"
    # Reconnect quickly: the socket usually appears a moment after the first try,
    # and gRPC's default 1 s reconnect backoff would be waited out in full.
    opts = [("grpc.initial_reconnect_backoff_ms", 50), ("grpc.min_reconnect_backoff_ms", 50),
            ("grpc.max_reconnect_backoff_ms", 200)]  # fmt: skip
    with grpc.insecure_channel(target, options=opts) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"service at {address} exited with {proc.returncode}")
            try:
                resp = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=1)
                if resp.status == health_pb2.HealthCheckResponse.SERVING:
                    return
                last = health_pb2.HealthCheckResponse.ServingStatus.Name(resp.status)
            except grpc.RpcError as e:
                last = e.code().name
            time.sleep(0.05)
    raise TimeoutError(f"{address} not SERVING after {timeout}s (last: {last})")


@dataclass(frozen=True)
class Tls:
    """Mutual TLS on a service's TCP listener (README, "Security model"), with the
    certificates scripts/make-certs.sh made in `certs`. A world with `tls`
    (harness.world) listens on 127.0.0.1 of each service's namespace, on ports
    `first_port`, `first_port` + 1, ... in the order its services first start."""

    certs: Path
    first_port: int = 7101

    def server(self) -> list[str]:
        """A service's flags (the server certificate is a client one too: a
        controller shows it to IPAM and the drivers)."""
        d = self.certs
        return ["--tls-cert", f"{d}/server.pem", "--tls-key", f"{d}/server-key.pem",
                "--tls-ca", f"{d}/ca.pem"]  # fmt: skip

    def client(self) -> list[str]:
        """cnmctl's or a probe's flags."""
        d = self.certs
        return ["--tls-ca", f"{d}/ca.pem", "--tls-cert", f"{d}/client.pem",
                "--tls-key", f"{d}/client-key.pem"]  # fmt: skip

    def wait_serving(
        self, address: str, *, netns_name: str = "", proc=None, timeout: float = 40.0
    ) -> None:
        """`wait_serving` over mutual TLS, probed from inside `netns_name` (the
        service's loopback is out of the test's reach) by services.healthcheck."""
        argv = [sys.executable, "-m", "services.healthcheck", "--timeout", "3",
                *self.client(), address]  # fmt: skip
        if netns_name:
            argv = ["nsenter", f"--net=/run/netns/{netns_name}", "--", *argv]

        def serving() -> bool:
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"service at {address} exited with {proc.returncode}")
            return subprocess.run(argv, capture_output=True, timeout=30).returncode == 0

        until(serving, f"{address} SERVING over mutual TLS", timeout=timeout, interval=0.05)


# Address spaces the IPAM tests use besides LocalDefault and GlobalDefault.
TEST_ADDRESS_SPACES = "blue,green,race"


def start_ipam(
    spawn,
    redis_url: str,
    run_dir: Path,
    name: str = "ipam",
    env: dict[str, str] | None = None,
    *,
    address_spaces: bool = True,
    netns_name: str = "",
    listen: str = "",
    tls: Tls | None = None,
) -> str:
    """`address_spaces`: declare TEST_ADDRESS_SPACES besides the two defaults;
    `netns_name`: run inside that namespace (as start_driver does); `listen`: the
    address (default: a unix socket in `run_dir`), with `tls` on it."""
    address = listen or f"unix://{run_dir}/{name}.sock"
    spaces = ["--address-spaces", TEST_ADDRESS_SPACES] if address_spaces else []
    argv = [str(BIN / "cnm-ipam"), "--listen", address, "--redis-url", redis_url, *spaces]
    if netns_name:
        argv = ["nsenter", f"--net=/run/netns/{netns_name}", "--", *argv]
    proc = spawn(argv + (tls.server() if tls else []), env=env)
    await_serving(address, proc, netns_name, tls)
    return address


def start_driver(
    spawn,
    redis_url: str,
    run_dir: Path,
    *,
    host_id: str,
    netns_name: str | None,
    netns_prefix: str,
    advertise_addr: str = "",
    extra: list[str] | None = None,
    env: dict[str, str] | None = None,
    listen: str = "",
    tls: Tls | None = None,
) -> str:
    """A driver service inside namespace `netns_name` (a test "host"); `listen`: the
    address (default: a unix socket in `run_dir`), with `tls` on it."""
    address = listen or f"unix://{run_dir}/driver-{host_id}.sock"
    state_dir = run_dir / f"state-{host_id}"
    argv = [
        str(BIN / "cnm-driver"),
        "--listen",
        address,
        "--redis-url",
        redis_url,
        "--host-id",
        host_id,
        "--state-dir",
        str(state_dir),
    ]
    if advertise_addr:
        argv += ["--advertise-addr", advertise_addr]
    if netns_name:
        # nsenter --net, not `ip netns exec`: the latter gives its child a private
        # (slave) mount namespace, so the sandbox namespaces the driver bind-mounts
        # under /run/netns would be invisible to the test and would vanish with it.
        argv = ["nsenter", f"--net=/run/netns/{netns_name}", "--", *argv]
    proc = spawn(
        argv + (tls.server() if tls else []) + (extra or []),
        env={"CNM_NETNS_PREFIX": netns_prefix, **(env or {})},
    )
    await_serving(address, proc, netns_name, tls)
    return address


def await_serving(address: str, proc, netns_name: str | None, tls: Tls | None) -> None:
    """`wait_serving`, or with `tls` its mutual-TLS probe from inside `netns_name`."""
    if tls is None:
        wait_serving(address, proc=proc)
    else:
        tls.wait_serving(address, netns_name=netns_name or "", proc=proc)


def short_tmp(prefix: str = "cnm") -> Path:
    """A short directory path: unix socket paths must stay under 108 bytes."""
    import tempfile

    return Path(
        tempfile.mkdtemp(prefix=f"{prefix}-", dir="/tmp" if os.path.isdir("/tmp") else None)
    )


def start_dns(
    spawn,
    redis_url: str,
    run_dir: Path,
    *,
    host_id: str,
    netns_name: str | None,
    env: dict[str, str] | None = None,
):
    """The resolver (cnm-dns) of a test host, in that host's namespace as cnmd would
    run it beside the driver; returns (health address, Popen) once SERVING."""
    address = f"unix://{run_dir}/dns-{host_id}.sock"
    argv = [
        str(BIN / "cnm-dns"),
        "--listen",
        address,
        "--redis-url",
        redis_url,
        "--host-id",
        host_id,
        "--log-format",
        "text",
    ]
    if netns_name:
        argv = ["nsenter", f"--net=/run/netns/{netns_name}", "--", *argv]
    proc = spawn(argv, env=env)
    wait_serving(address, proc=proc)
    return address, proc
