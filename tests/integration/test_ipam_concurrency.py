"""Many client processes, one or two cnm-ipam replicas, one Redis: nothing handed out twice.

Each client is a separate Python process (its own gRPC channel and GIL) that waits
for a start file, then allocates until RESOURCE_EXHAUSTED and writes what it got.
"""

from __future__ import annotations

import ipaddress
import json
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from cnm.ipam.v1 import ipam_pb2 as pb
from cnm.ipam.v1 import ipam_pb2_grpc
from harness.stack import short_tmp, start_ipam
from harness.wait import until

T = 10
CLIENTS = 8

# The client: `python -c CLIENT <mode> <address> <target> <go-file> <out-file>`.
CLIENT = r"""
import json, os, sys, time
import grpc
from cnm.ipam.v1 import ipam_pb2 as pb, ipam_pb2_grpc

mode, address, target, go, out = sys.argv[1:6]
channel = grpc.insecure_channel(address)
grpc.channel_ready_future(channel).result(timeout=10)
ipam, ids = ipam_pb2_grpc.IpamStub(channel), ipam_pb2_grpc.IdAllocatorStub(channel)
calls = {
    "address": lambda: ipam.RequestAddress(
        pb.RequestAddressRequest(pool_id=target, owner=f"pid-{os.getpid()}"), timeout=10).address,
    "pool": lambda: ipam.RequestPool(
        pb.RequestPoolRequest(address_space=target, owner=f"pid-{os.getpid()}"), timeout=10).pool,
    "id": lambda: ids.GetId(pb.GetIdRequest(name=target), timeout=10).id,
}
open(out + ".ready", "w").close()
while not os.path.exists(go):
    time.sleep(0.005)
got, final = [], None
while True:
    try:
        got.append(calls[mode]())
    except grpc.RpcError as e:
        final = [e.code().name, e.details()]
        break
with open(out + ".tmp", "w") as f:
    json.dump({"got": got, "final": final}, f)
os.rename(out + ".tmp", out)
"""


@pytest.fixture
def run_dir() -> Iterator[Path]:
    path = short_tmp("ipamc")
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def race(spawn, run_dir: Path, mode: str, addresses: list[str], target: str) -> list[dict]:
    """Start CLIENTS processes spread over `addresses`, release them together, collect."""
    go = run_dir / "go"
    outs = [run_dir / f"client-{i}.json" for i in range(CLIENTS)]
    procs = [
        spawn(
            [
                sys.executable,
                "-c",
                CLIENT,
                mode,
                addresses[i % len(addresses)],
                target,
                str(go),
                str(out),
            ]
        )
        for i, out in enumerate(outs)
    ]

    # Release them only when every one is connected, so they really start together.
    def ready() -> bool:
        assert all(p.poll() is None for p in procs), "a client died before the start"
        return all(Path(f"{out}.ready").exists() for out in outs)

    until(ready, "clients ready", timeout=30, interval=0.01)
    go.touch()
    deadline = time.monotonic() + 60
    for proc in procs:
        proc.wait(max(0.1, deadline - time.monotonic()))
        assert proc.returncode == 0
    return [json.loads(out.read_text()) for out in outs]


def assert_each_exactly_once(results: list[dict], expected: list, final_code: str) -> None:
    got = [x for r in results for x in r["got"]]
    assert len(got) == len(set(got)), "something was handed out twice"
    extra, missing = set(got) - set(expected), set(expected) - set(got)
    assert not extra and not missing, (
        f"handed out but not allowed: {extra}; never handed out: {missing}"
    )
    for r in results:
        assert r["final"][0] == final_code, r["final"]
    # All clients took part: the race was real.
    assert sum(1 for r in results if r["got"]) >= CLIENTS // 2


def make_pool(address: str, space: str, subnet: str) -> str:
    with grpc.insecure_channel(address) as ch:
        stub = ipam_pb2_grpc.IpamStub(ch)
        return stub.RequestPool(
            pb.RequestPoolRequest(address_space=space, pool=subnet), timeout=T
        ).pool_id


SLASH_22 = [f"{h}/22" for h in ipaddress.ip_network("10.44.0.0/22").hosts()]


def test_eight_clients_one_replica_slash_22_each_address_once(spawn, redis_url, run_dir) -> None:
    address = start_ipam(spawn, redis_url, run_dir)
    pool_id = make_pool(address, "race", "10.44.0.0/22")
    results = race(spawn, run_dir, "address", [address], pool_id)
    assert len(SLASH_22) == 1022
    assert_each_exactly_once(results, SLASH_22, "RESOURCE_EXHAUSTED")


def test_eight_clients_two_replicas_slash_22_each_address_once(spawn, redis_url, run_dir) -> None:
    replicas = [start_ipam(spawn, redis_url, run_dir, name=f"ipam-{i}") for i in range(2)]
    pool_id = make_pool(replicas[0], "race", "10.44.0.0/22")
    results = race(spawn, run_dir, "address", replicas, pool_id)
    assert_each_exactly_once(results, SLASH_22, "RESOURCE_EXHAUSTED")


def test_two_replicas_racing_for_the_next_predefined_pool_get_different_pools(
    spawn, redis_url, run_dir
) -> None:
    replicas = [start_ipam(spawn, redis_url, run_dir, name=f"ipam-{i}") for i in range(2)]
    results = race(spawn, run_dir, "pool", replicas, "LocalDefault")
    expected = [f"172.{n}.0.0/16" for n in range(17, 32)]
    expected += [f"192.168.{16 * i}.0/20" for i in range(16)]
    assert_each_exactly_once(results, expected, "RESOURCE_EXHAUSTED")
    for r in results:
        assert "LocalDefault" in r["final"][1]


def test_eight_clients_two_replicas_id_range_each_id_once(spawn, redis_url, run_dir) -> None:
    replicas = [start_ipam(spawn, redis_url, run_dir, name=f"ipam-{i}") for i in range(2)]
    with grpc.insecure_channel(replicas[0]) as ch:
        ipam_pb2_grpc.IdAllocatorStub(ch).CreateRange(
            pb.CreateRangeRequest(name="vni", start=256, end=755), timeout=T
        )
    results = race(spawn, run_dir, "id", replicas, "vni")
    assert_each_exactly_once(results, list(range(256, 756)), "RESOURCE_EXHAUSTED")
