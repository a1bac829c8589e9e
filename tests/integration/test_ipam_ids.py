"""cnm.ipam.v1.IdAllocator through gRPC: ranges, lowest-free ids, specific ids, sub-ranges."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest
from test_ipam_service import ipam_process

from cnm.ipam.v1 import ipam_pb2 as pb
from cnm.ipam.v1 import ipam_pb2_grpc

T = 5


@pytest.fixture(scope="module")
def ipam_address(redis_server: str) -> Iterator[str]:
    with ipam_process(redis_server, "ipamids") as address:
        yield address


@pytest.fixture
def ids(ipam_address: str, redis_url: str) -> Iterator[ipam_pb2_grpc.IdAllocatorStub]:
    with grpc.insecure_channel(ipam_address) as channel:
        yield ipam_pb2_grpc.IdAllocatorStub(channel)


def create(ids, name: str, start: int, end: int) -> None:
    ids.CreateRange(pb.CreateRangeRequest(name=name, start=start, end=end), timeout=T)


def get(ids, name: str, **kw) -> int:
    return ids.GetId(pb.GetIdRequest(name=name, **kw), timeout=T).id


def code_of(call) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as e:
        call()
    return e.value.code()


def test_vni_range_hands_out_lowest_free_and_reuses_released(ids) -> None:
    create(ids, "vni", 256, 2**24 - 1)
    assert [get(ids, "vni") for _ in range(3)] == [256, 257, 258]
    ids.ReleaseId(pb.ReleaseIdRequest(name="vni", id=257), timeout=T)
    ids.ReleaseId(pb.ReleaseIdRequest(name="vni", id=257), timeout=T)  # idempotent
    assert get(ids, "vni") == 257  # lowest free, not serial
    assert get(ids, "vni", id=2**24 - 1, owner="net-x") == 2**24 - 1
    assert code_of(lambda: get(ids, "vni", id=2**24 - 1)) == grpc.StatusCode.ALREADY_EXISTS
    assert get(ids, "vni", range_start=4096, range_end=4100) == 4096
    assert get(ids, "vni", range_start=4096, range_end=4100) == 4097


def test_create_range_is_idempotent_for_equal_bounds_only(ids) -> None:
    create(ids, "r", 1, 10)
    get(ids, "r")
    create(ids, "r", 1, 10)  # no reset: 1 stays taken
    assert get(ids, "r") == 2
    assert code_of(lambda: create(ids, "r", 1, 11)) == grpc.StatusCode.ALREADY_EXISTS


def test_range_exhaustion_then_release(ids) -> None:
    create(ids, "tiny", 7, 9)
    assert [get(ids, "tiny") for _ in range(3)] == [7, 8, 9]
    assert code_of(lambda: get(ids, "tiny")) == grpc.StatusCode.RESOURCE_EXHAUSTED
    ids.ReleaseId(pb.ReleaseIdRequest(name="tiny", id=8), timeout=T)
    assert get(ids, "tiny") == 8


def test_delete_range_is_idempotent_and_a_new_range_starts_fresh(ids) -> None:
    create(ids, "d", 100, 200)
    assert get(ids, "d") == 100
    ids.DeleteRange(pb.DeleteRangeRequest(name="d"), timeout=T)
    ids.DeleteRange(pb.DeleteRangeRequest(name="d"), timeout=T)
    assert code_of(lambda: get(ids, "d")) == grpc.StatusCode.NOT_FOUND
    create(ids, "d", 5000, 5001)
    assert get(ids, "d") == 5000


def test_largest_range_at_the_top_of_the_64_bit_space(ids) -> None:
    # At most 2^32 ids per range (test_ipam_errors checks 0..2^64-1 is refused),
    # anywhere in the unsigned 64-bit space.
    start = 2**64 - 2**32
    create(ids, "huge", start, 2**64 - 1)
    assert get(ids, "huge") == start
    assert get(ids, "huge", id=2**64 - 1) == 2**64 - 1
    assert get(ids, "huge", range_start=2**64 - 2, range_end=2**64 - 1) == 2**64 - 2
