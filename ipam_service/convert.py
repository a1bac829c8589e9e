"""Proto <-> domain for the IPAM service: the only module that knows both sides."""

from __future__ import annotations

from typing import Any

from cnm.ipam.v1 import ipam_pb2

from .allocator import (
    AddressRequest,
    Allocation,
    PoolInfo,
    PoolRequest,
    address_request,
    pool_request,
    saturate_u64,
)
from .remote import RemotePoolInfo


def pool_request_from(msg: ipam_pb2.RequestPoolRequest) -> PoolRequest:
    return pool_request(
        space=msg.address_space,
        pool=msg.pool,
        sub_pool=msg.sub_pool,
        options=dict(msg.options),
        v6=msg.v6,
        owner=msg.owner,
        request_id=msg.request_id,
    )


def address_request_from(msg: ipam_pb2.RequestAddressRequest) -> AddressRequest:
    return address_request(
        pool_id=msg.pool_id, address=msg.address, options=dict(msg.options), owner=msg.owner
    )


def pool_to(info: PoolInfo) -> ipam_pb2.Pool:
    pid = info.pool_id
    return ipam_pb2.Pool(
        pool_id=str(pid),
        address_space=pid.space,
        pool=str(pid.subnet),
        sub_pool=str(pid.sub_pool) if pid.sub_pool is not None else "",
        v6=pid.v6,
        owner=info.owner,
        used=saturate_u64(info.used),
        free=saturate_u64(info.free),
    )


def allocation_to(a: Allocation) -> ipam_pb2.Allocation:
    return ipam_pb2.Allocation(address=str(a.address), owner=a.owner)


def remote_pool_request_from(msg: ipam_pb2.RequestPoolRequest) -> dict[str, Any]:
    """Keyword arguments of RemotePools.request_pool (validated there)."""
    return {
        "driver": msg.driver,
        "space": msg.address_space,
        "pool": msg.pool,
        "sub_pool": msg.sub_pool,
        "options": dict(msg.options),
        "v6": msg.v6,
        "owner": msg.owner,
        "request_id": msg.request_id,
    }


def remote_pool_to(info: RemotePoolInfo) -> ipam_pb2.Pool:
    p = info.pool
    return ipam_pb2.Pool(
        pool_id=p.pool_id,
        address_space=p.space,
        pool=p.pool,
        sub_pool=p.sub_pool,
        v6=p.v6,
        owner=p.owner,
        used=saturate_u64(info.used),
        free=saturate_u64(info.free),
    )
