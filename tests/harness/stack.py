"""Start cnm service processes for integration tests, and wait for them.

Each starter runs the real console script from the venv through the test's
`spawn` fixture (so it is stopped by PID after the test) and returns the
service's address once its health check says SERVING. These are the low-level
starters: a test's world (hosts, IPAM, controllers) is built by harness/world.py.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

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
) -> str:
    """`address_spaces`: declare TEST_ADDRESS_SPACES besides the two defaults;
    `netns_name`: run inside that namespace (as start_driver does)."""
    address = f"unix://{run_dir}/{name}.sock"
    spaces = ["--address-spaces", TEST_ADDRESS_SPACES] if address_spaces else []
    argv = [str(BIN / "cnm-ipam"), "--listen", address, "--redis-url", redis_url, *spaces]
    if netns_name:
        argv = ["nsenter", f"--net=/run/netns/{netns_name}", "--", *argv]
    proc = spawn(argv, env=env)
    wait_serving(address, proc=proc)
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
) -> str:
    """A driver service inside namespace `netns_name` (a test "host")."""
    address = f"unix://{run_dir}/driver-{host_id}.sock"
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
        argv + (extra or []),
        env={"CNM_NETNS_PREFIX": netns_prefix, **(env or {})},
    )
    wait_serving(address, proc=proc)
    return address


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
