"""The one cnm world the fuzz catalogue runs against, and what "unchanged" means.

Redis (the session's), IPAM, one driver service inside a test "host"
namespace and a controller (a harness.world.World), started once per module.
The world holds a bridge network `n1` with a connected sandbox `s1`, an idle sandbox `s2`, a
free endpoint `free`, an IPAM pool in space `blue` and an id range `vni`:
enough for every RPC to find real objects next to the bad input.

`State.take` is everything a bad input must not change: every Redis key and
value (the heartbeat, liveness and event keys excepted: they move by
themselves), the host namespace's links, its nftables ruleset and the run's
namespaces.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass, field

import grpc

from cnm.controller.v1 import controller_pb2 as pb
from cnm.driver.v1 import driver_pb2_grpc
from cnm.ipam.v1 import ipam_pb2 as ipb
from cnm.ipam.v1 import ipam_pb2_grpc
from cnm.types.v1 import types_pb2
from driver_service import osl
from harness import kernel_snapshot, netns
from harness.world import FAST_FAILOVER, World
from integration.controller_env import snapshot
from ipam_service.bitseq import BitSequence

T = 10
SUBNET = "10.91.0.0/24"
BLUE_POOL = "blue/10.92.0.0/24"


@dataclass
class Fuzz:
    """Stubs of every public service of the world, and the ids of its objects."""

    world: World
    host_ns: str
    stubs: dict[str, object] = field(default_factory=dict)
    ids: dict[str, str] = field(default_factory=dict)

    def state(self) -> dict[str, object]:
        # Links and namespaces read in-process (no fork per case): the catalogue is long.
        tag = kernel_snapshot.TEST_TAG
        return {
            "redis": _allocations(snapshot(self.world.redis_url)),
            "netns": sorted(n for n in os.listdir("/run/netns") if tag in n),
            "links": sorted(li.name for li in osl.list_links(netns=self.host_ns)),
            "nft": netns.exec_in(self.host_ns, "nft", "list", "ruleset").stdout,
        }


def _allocations(facts: dict[str, object]) -> dict[str, object]:
    """Bit sequences compared by what is allocated, not by their serial cursor: a
    request refused after its address was allocated and released again (a Connect
    whose Join the driver refused) moves the cursor on, as libnetwork's does, so
    the next container gets the next address; no address is held."""
    out = dict(facts)
    for key, value in facts.items():
        if key.endswith(":bits") and isinstance(value, bytes):
            seq = BitSequence.from_bytes(value)
            out[key] = (seq.size, seq.runs())
    return out


def _channel(w: World, address: str) -> grpc.Channel:
    channel = grpc.insecure_channel(address)
    w.channels.append(channel)
    return channel


@contextlib.contextmanager
def fuzz_world(redis_server: str, netns_prefix: str) -> Iterator[Fuzz]:
    import redis

    from conftest import Spawner

    client = redis.Redis.from_url(redis_server)
    client.flushall()
    client.close()
    spawn = Spawner()
    w = World(spawn, redis_server, netns_prefix, tmp_prefix="cnmfz", controller_env=FAST_FAILOVER)
    try:
        w.add_host("h1", start=False).build()
        stub = w.stub()
        f = Fuzz(w, w.hosts["h1"].netns)
        f.stubs = {
            "Controller": stub,
            "Ipam": ipam_pb2_grpc.IpamStub(_channel(w, w.ipam)),
            "IdAllocator": ipam_pb2_grpc.IdAllocatorStub(_channel(w, w.ipam)),
            "Driver": driver_pb2_grpc.DriverStub(_channel(w, w.hosts["h1"].driver)),
        }
        ipam = pb.IpamSpec(configs=[types_pb2.IpamConfig(subnet=SUBNET)])
        net = stub.CreateNetwork(pb.CreateNetworkRequest(name="n1", ipam=ipam), timeout=T)
        s1 = stub.CreateSandbox(pb.CreateSandboxRequest(name="s1"), timeout=T)
        s2 = stub.CreateSandbox(pb.CreateSandboxRequest(name="s2"), timeout=T)
        joined = stub.Connect(pb.ConnectRequest(network="n1", sandbox="s1"), timeout=T)
        free = stub.CreateEndpoint(
            pb.CreateEndpointRequest(network="n1", spec=pb.EndpointSpec(name="free")), timeout=T
        )
        f.stubs["Ipam"].RequestPool(
            ipb.RequestPoolRequest(address_space="blue", pool="10.92.0.0/24"), timeout=T
        )
        f.stubs["IdAllocator"].CreateRange(
            ipb.CreateRangeRequest(name="vni", start=256, end=300), timeout=T
        )
        f.ids = {
            "network": net.id,
            "s1": s1.id,
            "s2": s2.id,
            "joined": joined.id,
            "free": free.id,
            "pool": next(
                p.pool_id
                for p in f.stubs["Ipam"].ListPools(ipb.ListPoolsRequest(), timeout=T).pools
                if p.owner == net.id
            ),
        }
        yield f
    finally:
        try:
            w.close()  # sandboxes, endpoints and networks through the API first
        finally:
            spawn.stop_all()
