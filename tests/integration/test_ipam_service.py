"""cnm-ipam through gRPC: pools, addresses, sub-pools, IPv6, owners, listing, retries.

One real cnm-ipam process serves the whole module (it keeps no state; Redis is
flushed before every test by the `redis_url` fixture).
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator

import grpc
import pytest
import redis

from cnm.ipam.v1 import ipam_pb2 as pb
from cnm.ipam.v1 import ipam_pb2_grpc
from harness.redis_proc import RedisProcess
from harness.spawner import Spawner
from harness.stack import short_tmp, start_ipam
from harness.wait import until

T = 5  # seconds: deadline of every call


@contextlib.contextmanager
def ipam_process(redis_url: str, name: str = "ipam") -> Iterator[str]:
    """A real cnm-ipam on a unix socket for a whole module; stopped by its PID after."""
    run_dir = short_tmp(name)
    spawn = Spawner(log_dir=run_dir)
    try:
        yield start_ipam(spawn, redis_url, run_dir, name=name)
    finally:
        spawn.stop_all()
        shutil.rmtree(run_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def ipam_address(redis_server: str) -> Iterator[str]:
    with ipam_process(redis_server) as address:
        yield address


@pytest.fixture
def ipam(ipam_address: str, redis_url: str) -> Iterator[ipam_pb2_grpc.IpamStub]:
    with grpc.insecure_channel(ipam_address) as channel:
        yield ipam_pb2_grpc.IpamStub(channel)


def pool(stub, space="LocalDefault", **kw) -> pb.RequestPoolResponse:
    return stub.RequestPool(pb.RequestPoolRequest(address_space=space, **kw), timeout=T)


def addr(stub, pool_id: str, **kw) -> str:
    return stub.RequestAddress(pb.RequestAddressRequest(pool_id=pool_id, **kw), timeout=T).address


def release(stub, pool_id: str, address: str) -> None:
    stub.ReleaseAddress(pb.ReleaseAddressRequest(pool_id=pool_id, address=address), timeout=T)


def status_of(call) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as e:
        call()
    return e.value.code(), e.value.details()


def unless_unavailable(call):
    """call()'s result, or None while the service answers UNAVAILABLE (for polling)."""
    try:
        return call()
    except grpc.RpcError as e:
        if e.code() != grpc.StatusCode.UNAVAILABLE:
            raise
        return None


def get_pool(stub, pool_id: str) -> pb.Pool:
    return stub.GetPool(pb.GetPoolRequest(pool_id=pool_id), timeout=T)


# --- spaces and pools ---------------------------------------------------------------------------


def test_default_address_spaces(ipam) -> None:
    resp = ipam.GetDefaultAddressSpaces(pb.GetDefaultAddressSpacesRequest(), timeout=T)
    assert (resp.local_default_address_space, resp.global_default_address_space) == (
        "LocalDefault",
        "GlobalDefault",
    )


def test_fresh_172_17_pool_gives_gateway_dot_1_then_dot_2(ipam) -> None:
    p = pool(ipam, owner="net-a")
    assert (p.pool_id, p.pool) == ("LocalDefault/172.17.0.0/16", "172.17.0.0/16")
    gw = addr(ipam, p.pool_id, options={"RequestAddressType": "com.docker.network.gateway"})
    assert gw == "172.17.0.1/16"
    assert addr(ipam, p.pool_id, owner="ep-1") == "172.17.0.2/16"
    owners = ipam.ListAllocations(pb.ListAllocationsRequest(pool_id=p.pool_id), timeout=T)
    assert [(a.address, a.owner) for a in owners.allocations] == [
        ("172.17.0.1", "gateway"),
        ("172.17.0.2", "ep-1"),
    ]


def test_predefined_local_pools_in_order_then_exhausted_naming_the_space(ipam) -> None:
    got = [pool(ipam).pool for _ in range(31)]
    assert got[:3] == ["172.17.0.0/16", "172.18.0.0/16", "172.19.0.0/16"]
    assert got[14:17] == ["172.31.0.0/16", "192.168.0.0/20", "192.168.16.0/20"]
    assert got[-1] == "192.168.240.0/20"
    code, details = status_of(lambda: pool(ipam))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "LocalDefault" in details
    # The other space is untouched by LocalDefault's exhaustion.
    assert pool(ipam, "GlobalDefault").pool == "10.0.0.0/24"
    assert pool(ipam, "GlobalDefault").pool == "10.0.1.0/24"


def test_predefined_pool_skips_explicit_pools_and_reuses_released_ones(ipam) -> None:
    pool(ipam, pool="172.17.128.0/24")
    assert pool(ipam).pool == "172.18.0.0/16"
    ipam.ReleasePool(pb.ReleasePoolRequest(pool_id="LocalDefault/172.17.128.0/24"), timeout=T)
    assert pool(ipam).pool == "172.17.0.0/16"


def test_overlap_within_a_space_is_already_exists_but_fine_across_spaces(ipam) -> None:
    first = pool(ipam, "blue", pool="10.10.0.0/16")
    for clash in ("10.10.0.0/16", "10.10.5.0/24", "10.0.0.0/8"):
        code, details = status_of(lambda c=clash: pool(ipam, "blue", pool=c))
        assert code == grpc.StatusCode.ALREADY_EXISTS, clash
        assert first.pool_id in details and clash in details
    assert pool(ipam, "green", pool="10.10.0.0/16").pool_id == "green/10.10.0.0/16"
    assert pool(ipam, "blue", pool="10.11.0.0/16").pool_id == "blue/10.11.0.0/16"


def test_release_pool_frees_every_address_and_unknown_pool_is_not_found(ipam) -> None:
    p = pool(ipam, "blue", pool="10.1.0.0/24")
    addr(ipam, p.pool_id)
    ipam.ReleasePool(pb.ReleasePoolRequest(pool_id=p.pool_id), timeout=T)
    code, details = status_of(
        lambda: ipam.ReleasePool(pb.ReleasePoolRequest(pool_id=p.pool_id), timeout=T)
    )
    assert code == grpc.StatusCode.NOT_FOUND and p.pool_id in details
    code, _ = status_of(lambda: addr(ipam, p.pool_id))
    assert code == grpc.StatusCode.NOT_FOUND
    again = pool(ipam, "blue", pool="10.1.0.0/24")
    assert addr(ipam, again.pool_id) == "10.1.0.1/24"


# --- addresses ----------------------------------------------------------------------------------


def test_fill_half_release_refill_is_serial_and_never_duplicates(ipam) -> None:
    p = pool(ipam, "blue", pool="10.2.0.0/24")
    hosts = [f"10.2.0.{i}/24" for i in range(1, 255)]
    first = [addr(ipam, p.pool_id, owner=f"ep{i}") for i in range(254)]
    assert first == hosts
    code, details = status_of(lambda: addr(ipam, p.pool_id))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and p.pool_id in details
    released = hosts[::2]
    for a in released:
        release(ipam, p.pool_id, a)
    assert get_pool(ipam, p.pool_id).free == len(released)
    # The cursor wrapped at the end of the pool: the refill starts over from the lowest
    # released address and goes up, each exactly once.
    refill = [addr(ipam, p.pool_id, owner="again") for _ in released]
    assert refill == released
    code, _ = status_of(lambda: addr(ipam, p.pool_id))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_released_address_is_not_reused_until_the_pool_wraps(ipam) -> None:
    p = pool(ipam, "blue", pool="10.3.0.0/29")  # .1 .. .6
    assert [addr(ipam, p.pool_id) for _ in range(3)] == [
        "10.3.0.1/29",
        "10.3.0.2/29",
        "10.3.0.3/29",
    ]
    release(ipam, p.pool_id, "10.3.0.2")
    assert [addr(ipam, p.pool_id) for _ in range(4)] == [
        "10.3.0.4/29",
        "10.3.0.5/29",
        "10.3.0.6/29",
        "10.3.0.2/29",
    ]


def test_preferred_address_outside_pool_taken_or_reserved(ipam) -> None:
    p = pool(ipam, "blue", pool="10.4.0.0/24")
    assert addr(ipam, p.pool_id, address="10.4.0.200", owner="ep-x") == "10.4.0.200/24"
    code, details = status_of(lambda: addr(ipam, p.pool_id, address="10.4.0.200"))
    assert code == grpc.StatusCode.ALREADY_EXISTS and "10.4.0.200" in details and "ep-x" in details
    for bad in ("10.4.1.1", "10.4.0.0", "10.4.0.255"):
        code, details = status_of(lambda b=bad: addr(ipam, p.pool_id, address=b))
        assert code == grpc.StatusCode.INVALID_ARGUMENT and bad in details
    # A preferred address does not move the serial cursor.
    assert addr(ipam, p.pool_id) == "10.4.0.1/24"


def test_release_address_is_idempotent(ipam) -> None:
    p = pool(ipam, "blue", pool="10.5.0.0/24")
    a = addr(ipam, p.pool_id)
    release(ipam, p.pool_id, a)
    release(ipam, p.pool_id, a)
    release(ipam, p.pool_id, "10.5.0.77")
    assert get_pool(ipam, p.pool_id).used == 0


# --- sub-pools, aux addresses, IPv6 --------------------------------------------------------------


def test_sub_pool_restricts_dynamic_allocation_not_preferred_addresses(ipam) -> None:
    p = pool(ipam, "blue", pool="10.6.0.0/24", sub_pool="10.6.0.252/30")
    assert p.pool_id == "blue/10.6.0.0/24/10.6.0.252/30"
    assert addr(ipam, p.pool_id, address="10.6.0.1") == "10.6.0.1/24"  # gateway outside
    got = [addr(ipam, p.pool_id) for _ in range(3)]
    assert got == ["10.6.0.252/24", "10.6.0.253/24", "10.6.0.254/24"]  # .255 is broadcast
    code, details = status_of(lambda: addr(ipam, p.pool_id))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "sub-pool 10.6.0.252/30" in details
    info = get_pool(ipam, p.pool_id)
    assert (info.pool, info.sub_pool, info.used, info.free) == (
        "10.6.0.0/24",
        "10.6.0.252/30",
        4,
        0,
    )
    # The sub-pool's parent subnet is taken: no other pool of the space may overlap it.
    code, _ = status_of(lambda: pool(ipam, "blue", pool="10.6.0.0/25"))
    assert code == grpc.StatusCode.ALREADY_EXISTS


def test_aux_addresses_are_reserved_with_the_pool(ipam) -> None:
    p = pool(
        ipam,
        "blue",
        pool="10.7.0.0/29",
        options={"cnm.ipam.aux_address.router": "10.7.0.1", "cnm.ipam.aux_address.dns": "10.7.0.3"},
    )
    assert dict(p.data) == {
        "cnm.ipam.aux_address.router": "10.7.0.1/29",
        "cnm.ipam.aux_address.dns": "10.7.0.3/29",
    }
    assert [addr(ipam, p.pool_id) for _ in range(4)] == [
        "10.7.0.2/29",
        "10.7.0.4/29",
        "10.7.0.5/29",
        "10.7.0.6/29",
    ]
    listed = ipam.ListAllocations(pb.ListAllocationsRequest(pool_id=p.pool_id), timeout=T)
    owners = {a.address: a.owner for a in listed.allocations}
    assert owners["10.7.0.1"] == "aux:router" and owners["10.7.0.3"] == "aux:dns"


def test_ipv6_slash_64_predefined_and_explicit(ipam) -> None:
    p = pool(ipam, v6=True)
    assert p.pool_id == "LocalDefault/fd00::/64"
    assert addr(ipam, p.pool_id) == "fd00::1/64"
    assert addr(ipam, p.pool_id) == "fd00::2/64"
    top = "fd00::ffff:ffff:ffff:ffff"
    assert addr(ipam, p.pool_id, address=top) == f"{top}/64"
    info = get_pool(ipam, p.pool_id)
    assert info.v6 and info.used == 3 and info.free == 2**64 - 4
    explicit = pool(ipam, "blue", pool="2001:db8:1::/64", sub_pool="2001:db8:1:0:8000::/80")
    assert addr(ipam, explicit.pool_id) == "2001:db8:1:0:8000::/64"
    release(ipam, explicit.pool_id, "2001:db8:1:0:8000::/64")
    assert get_pool(ipam, explicit.pool_id).used == 0


def test_ipv6_shorter_than_slash_64_allocates_from_its_first_two_to_the_64(ipam) -> None:
    p = pool(ipam, "blue", pool="2001:db8:2::/48")
    assert addr(ipam, p.pool_id) == "2001:db8:2::1/48"
    assert get_pool(ipam, p.pool_id).free == 2**64 - 2
    code, details = status_of(lambda: addr(ipam, p.pool_id, address="2001:db8:2:1::1"))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "2**64" in details


# --- listing and retries ------------------------------------------------------------------------


def test_list_pools_with_usage_space_filter_and_pages(ipam) -> None:
    for i in range(5):
        pool(ipam, "blue", pool=f"10.8.{i}.0/24", owner=f"net{i}")
    pool(ipam, "green", pool="10.9.0.0/24")
    addr(ipam, "blue/10.8.1.0/24")
    seen, token = [], ""
    while True:
        resp = ipam.ListPools(
            pb.ListPoolsRequest(address_space="blue", page_size=2, page_token=token), timeout=T
        )
        assert len(resp.pools) <= 2
        seen += list(resp.pools)
        token = resp.next_page_token
        if not token:
            break
    assert [p.pool for p in seen] == [f"10.8.{i}.0/24" for i in range(5)]
    by_pool = {p.pool: p for p in seen}
    assert (by_pool["10.8.1.0/24"].used, by_pool["10.8.1.0/24"].free) == (1, 253)
    assert by_pool["10.8.3.0/24"].owner == "net3"
    everything = ipam.ListPools(pb.ListPoolsRequest(), timeout=T)
    assert {p.address_space for p in everything.pools} == {"blue", "green"}


def test_list_allocations_pages_in_address_order(ipam) -> None:
    p = pool(ipam, "blue", pool="10.12.0.0/24")
    for i in range(7):
        addr(ipam, p.pool_id, owner=f"ep{i}")
    seen, token = [], ""
    while True:
        resp = ipam.ListAllocations(
            pb.ListAllocationsRequest(pool_id=p.pool_id, page_size=3, page_token=token), timeout=T
        )
        seen += [(a.address, a.owner) for a in resp.allocations]
        token = resp.next_page_token
        if not token:
            break
    assert seen == [(f"10.12.0.{i + 1}", f"ep{i}") for i in range(7)]


def test_request_id_retry_returns_the_first_result(ipam) -> None:
    first = pool(ipam, owner="net-a", request_id="create-net-a")
    again = pool(ipam, owner="net-a", request_id="create-net-a")
    assert again.pool_id == first.pool_id == "LocalDefault/172.17.0.0/16"
    assert pool(ipam).pool == "172.18.0.0/16"  # the retry did not take a pool
    code, details = status_of(lambda: pool(ipam, owner="net-b", request_id="create-net-a"))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "create-net-a" in details
    # Once released, the request id no longer pins the pool.
    ipam.ReleasePool(pb.ReleasePoolRequest(pool_id=first.pool_id), timeout=T)
    assert pool(ipam, owner="net-a", request_id="create-net-a").pool == "172.17.0.0/16"


def test_restarting_the_service_loses_nothing(spawn, redis_url: str) -> None:
    run_dir = short_tmp("ipamr")
    try:
        address = start_ipam(spawn, redis_url, run_dir, name="restart")
        with grpc.insecure_channel(address) as ch:
            stub = ipam_pb2_grpc.IpamStub(ch)
            p = pool(stub, owner="net-r")
            assert addr(stub, p.pool_id, owner="ep-r") == "172.17.0.1/16"
        spawn.stop(spawn.procs[-1])
        assert start_ipam(spawn, redis_url, run_dir, name="restart") == address
        with grpc.insecure_channel(address) as ch:
            stub = ipam_pb2_grpc.IpamStub(ch)
            assert addr(stub, p.pool_id) == "172.17.0.2/16"
            assert pool(stub).pool == "172.18.0.0/16"
            info = get_pool(stub, p.pool_id)
            assert (info.owner, info.used) == ("net-r", 2)
    finally:
        spawn.stop_all()
        shutil.rmtree(run_dir, ignore_errors=True)


def test_every_key_lives_under_the_ipam_prefix(ipam, redis_url: str) -> None:
    p = pool(ipam, request_id="r-1", options={})
    addr(ipam, p.pool_id)
    client = redis.Redis.from_url(redis_url)
    keys = [k.decode() for k in client.scan_iter("*")]
    client.close()
    assert keys and all(k.startswith("cnm:ipam:") for k in keys), keys


def test_redis_restart_with_append_only_file_loses_nothing(spawn) -> None:
    """Redis down: UNAVAILABLE naming Redis. Redis back (AOF replayed): every fact is there."""
    run_dir = short_tmp("ipamaof")
    store = RedisProcess(spawn, persistent=True, workdir=run_dir)
    try:
        store.start()
        address = start_ipam(spawn, store.url, run_dir, name="aof")
        with grpc.insecure_channel(address) as ch:
            stub = ipam_pb2_grpc.IpamStub(ch)
            p = pool(stub, owner="net-aof")
            assert addr(stub, p.pool_id, owner="ep-1") == "172.17.0.1/16"
            store.stop()
            code, details = status_of(lambda: addr(stub, p.pool_id))
            assert code == grpc.StatusCode.UNAVAILABLE and "redis" in details
            store.start()
            # The service reconnects on its own.
            got = until(
                lambda: unless_unavailable(lambda: addr(stub, p.pool_id, owner="ep-2")), "ep-2"
            )
            assert got == "172.17.0.2/16"
            listed = stub.ListAllocations(pb.ListAllocationsRequest(pool_id=p.pool_id), timeout=T)
            assert [(a.address, a.owner) for a in listed.allocations] == [
                ("172.17.0.1", "ep-1"),
                ("172.17.0.2", "ep-2"),
            ]
    finally:
        spawn.stop_all()
        shutil.rmtree(run_dir, ignore_errors=True)
