"""Every bad input to cnm-ipam: the exact status code, the value in the message, and
not one byte changed in Redis (every key's DUMP and TTL compared before and after)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import grpc
import pytest
import redis
from test_ipam_service import ipam_process

from cnm.ipam.v1 import ipam_pb2 as pb
from cnm.ipam.v1 import ipam_pb2_grpc

T = 5
INVALID = grpc.StatusCode.INVALID_ARGUMENT
NOT_FOUND = grpc.StatusCode.NOT_FOUND
EXISTS = grpc.StatusCode.ALREADY_EXISTS
EXHAUSTED = grpc.StatusCode.RESOURCE_EXHAUSTED

POOL = "blue/10.20.0.0/24"
FULL = "blue/10.21.0.0/30"
SUB = "blue/10.23.0.0/24/10.23.0.128/25"


@pytest.fixture(scope="module")
def ipam_address(redis_server: str) -> Iterator[str]:
    with ipam_process(redis_server, "ipamerr") as address:
        yield address


@pytest.fixture
def stubs(ipam_address: str, redis_url: str) -> Iterator[dict[str, Any]]:
    """A small world every case runs against, then the stubs."""
    with grpc.insecure_channel(ipam_address) as channel:
        ipam = ipam_pb2_grpc.IpamStub(channel)
        ids = ipam_pb2_grpc.IdAllocatorStub(channel)
        for space, pool, sub, rid in (
            ("blue", "10.20.0.0/24", "", "r-1"),
            ("blue", "10.21.0.0/30", "", ""),
            ("blue", "10.23.0.0/24", "10.23.0.128/25", ""),
        ):
            ipam.RequestPool(
                pb.RequestPoolRequest(address_space=space, pool=pool, sub_pool=sub, request_id=rid),
                timeout=T,
            )
        ipam.RequestAddress(
            pb.RequestAddressRequest(pool_id=POOL, address="10.20.0.5", owner="ep1"), timeout=T
        )
        for _ in range(2):
            ipam.RequestAddress(pb.RequestAddressRequest(pool_id=FULL), timeout=T)
        ids.CreateRange(pb.CreateRangeRequest(name="vni", start=256, end=258), timeout=T)
        ids.GetId(pb.GetIdRequest(name="vni", id=256), timeout=T)
        ids.CreateRange(pb.CreateRangeRequest(name="full", start=1, end=1), timeout=T)
        ids.GetId(pb.GetIdRequest(name="full"), timeout=T)
        yield {"Ipam": ipam, "IdAllocator": ids}


def snapshot(url: str) -> dict[bytes, tuple[bytes | None, bool]]:
    client = redis.Redis.from_url(url)
    try:
        return {k: (client.dump(k), client.ttl(k) > 0) for k in client.scan_iter("*")}
    finally:
        client.close()


def case(id_: str, service: str, method: str, request: Any, code: grpc.StatusCode, text: str):
    return pytest.param(service, method, request, code, text, id=id_)


RP = pb.RequestPoolRequest
RA = pb.RequestAddressRequest
REL = pb.ReleaseAddressRequest
GI = pb.GetIdRequest

CASES = [
    # RequestPool
    case("pool-empty-space", "Ipam", "RequestPool", RP(pool="10.30.0.0/24"), INVALID, "address_space"),
    case("pool-bad-space", "Ipam", "RequestPool", RP(address_space="a/b"), INVALID, "'a/b'"),
    case("pool-malformed-cidr", "Ipam", "RequestPool", RP(address_space="blue", pool="10.300.0.0/16"), INVALID, "10.300.0.0/16"),
    case("pool-garbage", "Ipam", "RequestPool", RP(address_space="blue", pool="banana"), INVALID, "banana"),
    case("pool-no-prefix", "Ipam", "RequestPool", RP(address_space="blue", pool="10.30.0.0"), INVALID, "10.30.0.0"),
    case("pool-host-bits", "Ipam", "RequestPool", RP(address_space="blue", pool="10.30.0.1/24"), INVALID, "10.30.0.1/24"),
    case("pool-prefix-33", "Ipam", "RequestPool", RP(address_space="blue", pool="10.30.0.0/33"), INVALID, "10.30.0.0/33"),
    case("pool-too-small", "Ipam", "RequestPool", RP(address_space="blue", pool="10.30.0.0/31"), INVALID, "10.30.0.0/31"),
    case("pool-v6-host-bits", "Ipam", "RequestPool", RP(address_space="blue", pool="fd00::1/64"), INVALID, "fd00::1/64"),
    case("pool-overlaps", "Ipam", "RequestPool", RP(address_space="blue", pool="10.20.0.128/25"), EXISTS, POOL),
    case("pool-same-subnet", "Ipam", "RequestPool", RP(address_space="blue", pool="10.20.0.0/24"), EXISTS, POOL),
    case("pool-no-predefined-in-custom-space", "Ipam", "RequestPool", RP(address_space="blue"), INVALID, "'blue'"),
    case("sub-pool-without-pool", "Ipam", "RequestPool", RP(address_space="blue", sub_pool="10.30.0.0/25"), INVALID, "10.30.0.0/25"),
    case("sub-pool-outside", "Ipam", "RequestPool", RP(address_space="blue", pool="10.30.0.0/24", sub_pool="10.31.0.0/25"), INVALID, "10.31.0.0/25"),
    case("sub-pool-malformed", "Ipam", "RequestPool", RP(address_space="blue", pool="10.30.0.0/24", sub_pool="10.30.0.0/99"), INVALID, "10.30.0.0/99"),
    case("sub-pool-other-family", "Ipam", "RequestPool", RP(address_space="blue", pool="10.30.0.0/24", sub_pool="fd00::/64"), INVALID, "fd00::/64"),
    case("v6-flag-with-v4-pool", "Ipam", "RequestPool", RP(address_space="blue", pool="10.30.0.0/24", v6=True), INVALID, "10.30.0.0/24"),
    case("option-unknown-own-key", "Ipam", "RequestPool", RP(address_space="blue", pool="10.30.0.0/24", options={"cnm.ipam.bogus": "1"}), INVALID, "cnm.ipam.bogus"),
    case("option-aux-outside", "Ipam", "RequestPool", RP(address_space="blue", pool="10.30.0.0/24", options={"cnm.ipam.aux_address.r": "10.31.0.1"}), INVALID, "10.31.0.1"),
    case("option-aux-malformed", "Ipam", "RequestPool", RP(address_space="blue", pool="10.30.0.0/24", options={"cnm.ipam.aux_address.r": "10.30.0.x"}), INVALID, "10.30.0.x"),
    case("option-aux-broadcast", "Ipam", "RequestPool", RP(address_space="blue", pool="10.30.0.0/24", options={"cnm.ipam.aux_address.r": "10.30.0.255"}), INVALID, "10.30.0.255"),
    case("option-aux-bad-name", "Ipam", "RequestPool", RP(address_space="blue", pool="10.30.0.0/24", options={"cnm.ipam.aux_address.-x": "10.30.0.9"}), INVALID, "-x"),
    case("option-aux-twice", "Ipam", "RequestPool", RP(address_space="blue", pool="10.30.0.0/24", options={"cnm.ipam.aux_address.a": "10.30.0.9", "cnm.ipam.aux_address.b": "10.30.0.9"}), INVALID, "10.30.0.9"),
    case("option-aux-predefined-pool", "Ipam", "RequestPool", RP(address_space="LocalDefault", options={"cnm.ipam.aux_address.a": "172.17.0.9"}), INVALID, "cnm.ipam.aux_address.a"),
    case("owner-too-long", "Ipam", "RequestPool", RP(address_space="LocalDefault", owner="o" * 300), INVALID, "owner"),
    case("request-id-malformed", "Ipam", "RequestPool", RP(address_space="LocalDefault", request_id="a b"), INVALID, "'a b'"),
    case("request-id-reused-differently", "Ipam", "RequestPool", RP(address_space="blue", pool="10.40.0.0/24", request_id="r-1"), INVALID, "r-1"),
    case("pool-undeclared-space", "Ipam", "RequestPool", RP(address_space="nowhere", pool="10.30.0.0/24"), INVALID, "address space 'nowhere'"),
    case("pool-undeclared-space-predefined", "Ipam", "RequestPool", RP(address_space="nowhere"), INVALID, "address space 'nowhere'"),
    case("pool-every-v4-address", "Ipam", "RequestPool", RP(address_space="blue", pool="0.0.0.0/0"), INVALID, "0.0.0.0/0"),
    case("pool-every-v6-address", "Ipam", "RequestPool", RP(address_space="blue", pool="::/0", v6=True), INVALID, "::/0"),
    # ReleasePool / GetPool
    case("release-pool-unknown", "Ipam", "ReleasePool", pb.ReleasePoolRequest(pool_id="blue/10.99.0.0/24"), NOT_FOUND, "blue/10.99.0.0/24"),
    case("release-pool-sub-pool-id-of-plain-pool", "Ipam", "ReleasePool", pb.ReleasePoolRequest(pool_id="blue/10.20.0.0/24/10.20.0.0/25"), NOT_FOUND, "10.20.0.0/25"),
    case("release-pool-malformed", "Ipam", "ReleasePool", pb.ReleasePoolRequest(pool_id="blue/10.20.0.0"), INVALID, "blue/10.20.0.0"),
    case("release-pool-empty", "Ipam", "ReleasePool", pb.ReleasePoolRequest(), INVALID, "pool id"),
    case("get-pool-unknown", "Ipam", "GetPool", pb.GetPoolRequest(pool_id="green/10.20.0.0/24"), NOT_FOUND, "green/10.20.0.0/24"),
    case("get-pool-malformed", "Ipam", "GetPool", pb.GetPoolRequest(pool_id="x/y/z"), INVALID, "x/y/z"),
    # RequestAddress
    case("address-unknown-pool", "Ipam", "RequestAddress", RA(pool_id="blue/10.99.0.0/24"), NOT_FOUND, "blue/10.99.0.0/24"),
    case("address-malformed-pool-id", "Ipam", "RequestAddress", RA(pool_id="blue"), INVALID, "'blue'"),
    case("address-pool-id-host-bits", "Ipam", "RequestAddress", RA(pool_id="blue/10.20.0.1/24"), INVALID, "10.20.0.1/24"),
    case("address-malformed", "Ipam", "RequestAddress", RA(pool_id=POOL, address="10.20.0.300"), INVALID, "10.20.0.300"),
    case("address-outside-pool", "Ipam", "RequestAddress", RA(pool_id=POOL, address="10.20.1.1"), INVALID, "10.20.1.1"),
    case("address-other-family", "Ipam", "RequestAddress", RA(pool_id=POOL, address="fd00::1"), INVALID, "fd00::1"),
    case("address-network", "Ipam", "RequestAddress", RA(pool_id=POOL, address="10.20.0.0"), INVALID, "10.20.0.0"),
    case("address-broadcast", "Ipam", "RequestAddress", RA(pool_id=POOL, address="10.20.0.255"), INVALID, "10.20.0.255"),
    case("address-wrong-prefix", "Ipam", "RequestAddress", RA(pool_id=POOL, address="10.20.0.9/16"), INVALID, "10.20.0.9/16"),
    case("address-taken", "Ipam", "RequestAddress", RA(pool_id=POOL, address="10.20.0.5"), EXISTS, "ep1"),
    case("address-pool-full", "Ipam", "RequestAddress", RA(pool_id=FULL), EXHAUSTED, FULL),
    case("address-bad-request-type", "Ipam", "RequestAddress", RA(pool_id=POOL, options={"RequestAddressType": "x"}), INVALID, "'x'"),
    case("address-unknown-own-option", "Ipam", "RequestAddress", RA(pool_id=POOL, options={"cnm.ipam.zzz": "1"}), INVALID, "cnm.ipam.zzz"),
    case("address-owner-too-long", "Ipam", "RequestAddress", RA(pool_id=POOL, owner="o" * 300), INVALID, "owner"),
    # ReleaseAddress
    case("release-address-unknown-pool", "Ipam", "ReleaseAddress", REL(pool_id="blue/10.99.0.0/24", address="10.99.0.1"), NOT_FOUND, "blue/10.99.0.0/24"),
    case("release-address-malformed", "Ipam", "ReleaseAddress", REL(pool_id=POOL, address="nope"), INVALID, "nope"),
    case("release-address-empty", "Ipam", "ReleaseAddress", REL(pool_id=POOL), INVALID, "address"),
    case("release-address-outside", "Ipam", "ReleaseAddress", REL(pool_id=POOL, address="10.21.0.1"), INVALID, "10.21.0.1"),
    case("release-address-network", "Ipam", "ReleaseAddress", REL(pool_id=FULL, address="10.21.0.0"), INVALID, "10.21.0.0"),
    case("release-address-broadcast", "Ipam", "ReleaseAddress", REL(pool_id=FULL, address="10.21.0.3/30"), INVALID, "10.21.0.3"),
    # ListPools / ListAllocations
    case("list-pools-negative-page", "Ipam", "ListPools", pb.ListPoolsRequest(page_size=-1), INVALID, "-1"),
    case("list-pools-bad-token", "Ipam", "ListPools", pb.ListPoolsRequest(page_token="@@"), INVALID, "@@"),
    case("list-pools-bad-space", "Ipam", "ListPools", pb.ListPoolsRequest(address_space="a b"), INVALID, "'a b'"),
    case("list-allocations-unknown-pool", "Ipam", "ListAllocations", pb.ListAllocationsRequest(pool_id="blue/10.99.0.0/24"), NOT_FOUND, "blue/10.99.0.0/24"),
    case("list-allocations-bad-token", "Ipam", "ListAllocations", pb.ListAllocationsRequest(pool_id=POOL, page_token="!"), INVALID, "'!'"),
    case("list-allocations-negative-page", "Ipam", "ListAllocations", pb.ListAllocationsRequest(pool_id=POOL, page_size=-5), INVALID, "-5"),
    # IdAllocator
    case("range-bad-name", "IdAllocator", "CreateRange", pb.CreateRangeRequest(name="a b", start=1, end=2), INVALID, "'a b'"),
    case("range-empty-name", "IdAllocator", "CreateRange", pb.CreateRangeRequest(start=1, end=2), INVALID, "''"),
    case("range-start-above-end", "IdAllocator", "CreateRange", pb.CreateRangeRequest(name="r", start=9, end=2), INVALID, "[9, 2]"),
    case("range-every-u64", "IdAllocator", "CreateRange", pb.CreateRangeRequest(name="huge", start=0, end=2**64 - 1), INVALID, "at most 4294967296"),
    case("range-2-32-plus-1", "IdAllocator", "CreateRange", pb.CreateRangeRequest(name="huge", start=1, end=2**32 + 1), INVALID, "at most 4294967296"),
    case("range-other-bounds", "IdAllocator", "CreateRange", pb.CreateRangeRequest(name="vni", start=256, end=999), EXISTS, "vni"),
    case("id-unknown-range", "IdAllocator", "GetId", GI(name="nope"), NOT_FOUND, "nope"),
    case("id-outside-range", "IdAllocator", "GetId", GI(name="vni", id=300), INVALID, "300"),
    case("id-taken", "IdAllocator", "GetId", GI(name="vni", id=256), EXISTS, "256"),
    case("id-range-full", "IdAllocator", "GetId", GI(name="full"), EXHAUSTED, "full"),
    case("id-half-a-sub-range", "IdAllocator", "GetId", GI(name="vni", range_start=257), INVALID, "range_end"),
    case("id-sub-range-outside", "IdAllocator", "GetId", GI(name="vni", range_start=100, range_end=257), INVALID, "100"),
    case("id-sub-range-reversed", "IdAllocator", "GetId", GI(name="vni", range_start=258, range_end=257), INVALID, "258"),
    case("id-and-sub-range", "IdAllocator", "GetId", GI(name="vni", id=257, range_start=257, range_end=258), INVALID, "not both"),
    case("id-sub-range-full", "IdAllocator", "GetId", GI(name="vni", range_start=256, range_end=256), EXHAUSTED, "[256, 256]"),
    case("id-owner-too-long", "IdAllocator", "GetId", GI(name="vni", owner="o" * 300), INVALID, "owner"),
    case("release-id-unknown-range", "IdAllocator", "ReleaseId", pb.ReleaseIdRequest(name="nope", id=1), NOT_FOUND, "nope"),
    case("release-id-outside", "IdAllocator", "ReleaseId", pb.ReleaseIdRequest(name="vni", id=7), INVALID, "7"),
    case("delete-range-bad-name", "IdAllocator", "DeleteRange", pb.DeleteRangeRequest(name="{x}"), INVALID, "{x}"),
]  # fmt: skip


@pytest.mark.parametrize(("service", "method", "request_", "code", "text"), CASES)
def test_bad_input_is_rejected_and_changes_nothing(
    stubs: dict[str, Any],
    redis_url: str,
    service: str,
    method: str,
    request_: Any,
    code: grpc.StatusCode,
    text: str,
) -> None:
    before = snapshot(redis_url)
    with pytest.raises(grpc.RpcError) as e:
        getattr(stubs[service], method)(request_, timeout=T)
    assert e.value.code() == code, e.value.details()
    assert text in e.value.details()
    assert snapshot(redis_url) == before


def test_the_world_the_cases_run_against_is_what_they_assume(stubs: dict[str, Any]) -> None:
    """Guards the fixture: a broken setup would make NOT_FOUND cases pass for the wrong reason."""
    ipam = stubs["Ipam"]
    pools = {p.pool_id for p in ipam.ListPools(pb.ListPoolsRequest(), timeout=T).pools}
    assert pools == {POOL, FULL, SUB}
    full = ipam.GetPool(pb.GetPoolRequest(pool_id=FULL), timeout=T)
    assert (full.used, full.free) == (2, 0)
