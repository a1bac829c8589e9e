"""Overlay network creation refused: the exact code, a message naming the
problem, and nothing half-made (every stored fact and IPAM pool as before, no
overlay namespace on the host). One module-wide cluster of one host whose
controller may hand out only VNIs 300 and 301."""

from __future__ import annotations

import grpc
import pytest
import redis
from controller_env import T, snapshot

from cnm.controller.v1 import controller_pb2 as pb
from cnm.types.v1 import types_pb2 as tpb
from harness import kernel_snapshot, netns, world
from harness.spawner import Spawner
from harness.world import World

VNI_KEY = "com.docker.network.driver.overlay.vxlanid_list"
PORT_KEY = "com.cnm.overlay.vxlan_port"


@pytest.fixture(scope="module")
def cluster(redis_server, netns_prefix):
    client = redis.Redis.from_url(redis_server)
    client.flushall()
    client.close()
    spawn = Spawner()
    cl = None
    try:
        cl = world.cluster(
            spawn,
            redis_server,
            name=f"cnmc-{kernel_snapshot.TEST_TAG}-e",
            netns_prefix=netns_prefix,
            hosts=1,
            controller_env={"CNM_OVERLAY_VNI_RANGE": "300-301"},
        )
        c = cl.stub()
        first = c.CreateNetwork(
            pb.CreateNetworkRequest(
                name="first",
                driver="overlay",
                ipam=pb.IpamSpec(configs=[tpb.IpamConfig(subnet="10.10.0.0/24")]),
            ),
            timeout=T,
        )
        assert first.options[VNI_KEY] == "300"
        yield cl
    finally:
        if cl is not None:
            cl.close()
        for proc in spawn.procs:
            spawn.stop(proc)


def state(cl: World) -> tuple[dict, list, list[str]]:
    """Stored facts, IPAM pools, and the overlay namespaces that exist."""
    pools = sorted(
        (p.pool, p.owner, p.used)
        for p in cl.stub().ListPools(pb.ListPoolsRequest(), timeout=T).pools
    )
    spaces = [
        line.split()[0]
        for line in netns.run("ip", "netns", "list").stdout.splitlines()
        if line.startswith(f"{cl.netns_prefix}ov-")
    ]
    return snapshot(cl.redis_url), pools, spaces


def subnet(cidr: str) -> pb.IpamSpec:
    return pb.IpamSpec(configs=[tpb.IpamConfig(subnet=cidr)])


BAD = [
    ("overlapping-global-subnet", {"ipam": subnet("10.10.0.128/25")}, "ALREADY_EXISTS", "10.10.0"),
    ("same-subnet", {"ipam": subnet("10.10.0.0/24")}, "ALREADY_EXISTS", "10.10.0.0/24"),
    ("name-taken", {"name": "first"}, "ALREADY_EXISTS", "first"),
    ("vni-taken", {"options": {VNI_KEY: "300"}}, "ALREADY_EXISTS", "VNI 300"),
    ("vni-not-a-number", {"options": {VNI_KEY: "abc"}}, "INVALID_ARGUMENT", "abc"),
    ("vni-below-256", {"options": {VNI_KEY: "255"}}, "INVALID_ARGUMENT", "255"),
    ("vni-above-2^24-1", {"options": {VNI_KEY: "16777216"}}, "INVALID_ARGUMENT", "16777216"),
    ("vni-list-of-two", {"options": {VNI_KEY: "300,301"}}, "INVALID_ARGUMENT", "300,301"),
    (
        "unknown-overlay-option",
        {"options": {"com.docker.network.driver.overlay.encrypted": "true"}},
        "INVALID_ARGUMENT",
        "encrypted",
    ),
    ("vxlan-port-out-of-range", {"options": {PORT_KEY: "70000"}}, "INVALID_ARGUMENT", "70000"),
    ("vxlan-port-not-a-number", {"options": {PORT_KEY: "vx"}}, "INVALID_ARGUMENT", "vx"),
    ("host-given-for-global-scope", {"host": "h1"}, "INVALID_ARGUMENT", "global"),
]


@pytest.mark.parametrize(("fields", "code", "named"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_overlay_network_is_refused_and_nothing_is_half_made(cluster, fields, code, named):
    c = cluster.stub()
    before = state(cluster)
    request = {"name": "second", "driver": "overlay", **fields}
    with pytest.raises(grpc.RpcError) as err:
        c.CreateNetwork(pb.CreateNetworkRequest(**request), timeout=T)
    assert err.value.code().name == code, err.value.details()
    assert named in err.value.details()
    assert state(cluster) == before


def test_vni_exhaustion_is_resource_exhausted_and_a_deleted_network_frees_its_vni(cluster):
    c = cluster.stub()
    second = c.CreateNetwork(pb.CreateNetworkRequest(name="second", driver="overlay"), timeout=T)
    assert second.options[VNI_KEY] == "301"
    try:
        before = state(cluster)
        with pytest.raises(grpc.RpcError) as err:
            c.CreateNetwork(pb.CreateNetworkRequest(name="third", driver="overlay"), timeout=T)
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "third" in err.value.details() and "300-301" in err.value.details()
        assert state(cluster) == before
        # A VNI asked for by number is taken exactly, also outside the automatic range.
        pinned = c.CreateNetwork(
            pb.CreateNetworkRequest(name="pinned", driver="overlay", options={VNI_KEY: "5000"}),
            timeout=T,
        )
        assert pinned.options[VNI_KEY] == "5000"
        c.DeleteNetwork(pb.DeleteNetworkRequest(id_or_name="pinned"), timeout=T)
    finally:
        c.DeleteNetwork(pb.DeleteNetworkRequest(id_or_name="second"), timeout=T)
    third = c.CreateNetwork(pb.CreateNetworkRequest(name="third", driver="overlay"), timeout=T)
    assert third.options[VNI_KEY] == "301"
    c.DeleteNetwork(pb.DeleteNetworkRequest(id_or_name="third"), timeout=T)
    again = c.CreateNetwork(
        pb.CreateNetworkRequest(name="again", driver="overlay", options={VNI_KEY: "5000"}),
        timeout=T,
    )
    assert again.options[VNI_KEY] == "5000", "the deleted network's VNI was released"
    c.DeleteNetwork(pb.DeleteNetworkRequest(id_or_name="again"), timeout=T)
