"""Prometheus metrics (--metrics-listen / CNM_METRICS_LISTEN): the three services
serve them, and a scrape after real calls counts those calls."""

from __future__ import annotations

import socket
import subprocess
import sys
import urllib.request

import grpc
import pytest
from controller_env import T
from prometheus_client.parser import text_string_to_metric_families

from cnm.controller.v1 import controller_pb2 as pb
from cnm.types.v1 import types_pb2
from harness.world import FAST_FAILOVER, World

DRIVER_METRICS = "127.0.0.1:9464"  # inside the test host's own namespace: always free


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _value(samples, name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


def _scrape(address: str) -> dict:
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=T) as reply:
        return _samples(reply.read().decode())


def _scrape_in(netns: str, address: str) -> dict:
    code = (
        "import sys, urllib.request;"
        f"sys.stdout.write(urllib.request.urlopen('http://{address}/metrics', timeout=10)"
        ".read().decode())"
    )
    out = subprocess.run(
        ["nsenter", f"--net=/run/netns/{netns}", "--", sys.executable, "-c", code],
        check=True,
        capture_output=True,
        text=True,
        timeout=30,
    ).stdout
    return _samples(out)


@pytest.fixture
def world(spawn, redis_url, netns_prefix):
    w = World(spawn, redis_url, netns_prefix, tmp_prefix="cnmm", controller_env=FAST_FAILOVER)
    try:
        yield w
    finally:
        w.close()


def test_each_service_counts_the_calls_it_served(world, netns_host):
    ipam_at, controller_at = f"127.0.0.1:{_free_port()}", f"127.0.0.1:{_free_port()}"
    world.start_ipam(env={"CNM_METRICS_LISTEN": ipam_at})
    world.add_host("h1", netns=netns_host, env={"CNM_METRICS_LISTEN": DRIVER_METRICS})
    world.start_controller(env={"CNM_METRICS_LISTEN": controller_at})
    c = world.stub()
    c.CreateNetwork(
        pb.CreateNetworkRequest(
            name="measured",
            ipam=pb.IpamSpec(configs=[types_pb2.IpamConfig(subnet="10.83.0.0/24")]),
        ),
        timeout=T,
    )
    c.CreateSandbox(pb.CreateSandboxRequest(name="box"), timeout=T)
    port = types_pb2.PortBinding(
        protocol=types_pb2.PROTOCOL_TCP, host_port=_free_port(), container_port=80
    )
    c.Connect(
        pb.ConnectRequest(
            network="measured", sandbox="box", spec=pb.EndpointSpec(port_bindings=[port])
        ),
        timeout=T,
    )
    with pytest.raises(grpc.RpcError) as err:
        c.GetNetwork(pb.GetNetworkRequest(id_or_name="nonexistent"), timeout=T)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND

    ctl = _scrape(controller_at)
    count = "cnm_rpc_duration_seconds_count"
    assert _value(ctl, count, method="Connect", code="OK") == 1
    assert _value(ctl, count, method="GetNetwork", code="NOT_FOUND") == 1
    assert _value(ctl, "cnm_network_endpoints", network="measured", driver="bridge") == 1
    assert _value(ctl, "cnm_redis_round_trips_total") > 0

    ipam = _scrape(ipam_at)
    assert _value(ipam, count, method="RequestAddress", code="OK") >= 2  # gateway + endpoint
    pools = {labels: v for (name, labels), v in ipam.items() if name == "cnm_ipam_pool_addresses"}
    used = [v for labels, v in pools.items() if ("state", "used") in labels]
    free = [v for labels, v in pools.items() if ("state", "free") in labels]
    assert used == [2] and free == [252]  # 254 hosts of the /24: gateway + endpoint used

    drv = _scrape_in(netns_host, DRIVER_METRICS)
    assert _value(drv, count, method="Join", code="OK") == 1
    for step in ("netlink", "nft"):
        assert _value(drv, "cnm_driver_step_duration_seconds_count", step=step) > 0, step
    assert _value(drv, "cnm_driver_published_ports", protocol="tcp") == 1
    assert _value(drv, "process_resident_memory_bytes") > 0
