"""gRPC servicers of cnm.ipam.v1.Ipam and cnm.ipam.v1.IdAllocator: thin adapters.

proto -> model (convert.py), one domain call (pools.py / idranges.py), model ->
proto. Errors are domain errors, mapped to status codes by the interceptor.
"""

from __future__ import annotations

from typing import Any

from cnm.ipam.v1 import ipam_pb2, ipam_pb2_grpc

from . import convert
from .idranges import IdRanges
from .pools import Pools
from .spaces import GLOBAL_DEFAULT, LOCAL_DEFAULT


class IpamServicer(ipam_pb2_grpc.IpamServicer):
    def __init__(self, pools: Pools) -> None:
        self.pools = pools

    def GetDefaultAddressSpaces(self, request: Any, context: Any) -> Any:
        return ipam_pb2.GetDefaultAddressSpacesResponse(
            local_default_address_space=LOCAL_DEFAULT, global_default_address_space=GLOBAL_DEFAULT
        )

    def RequestPool(self, request: Any, context: Any) -> Any:
        grant = self.pools.request_pool(convert.pool_request_from(request))
        return ipam_pb2.RequestPoolResponse(
            pool_id=str(grant.pool_id), pool=str(grant.pool_id.subnet), data=dict(grant.data)
        )

    def ReleasePool(self, request: Any, context: Any) -> Any:
        self.pools.release_pool(request.pool_id)
        return ipam_pb2.ReleasePoolResponse()

    def RequestAddress(self, request: Any, context: Any) -> Any:
        address = self.pools.request_address(convert.address_request_from(request))
        return ipam_pb2.RequestAddressResponse(address=address)

    def ReleaseAddress(self, request: Any, context: Any) -> Any:
        self.pools.release_address(request.pool_id, request.address)
        return ipam_pb2.ReleaseAddressResponse()

    def GetPool(self, request: Any, context: Any) -> Any:
        return convert.pool_to(self.pools.get_pool(request.pool_id))

    def ListPools(self, request: Any, context: Any) -> Any:
        pools, token = self.pools.list_pools(
            request.address_space, request.page_size, request.page_token
        )
        return ipam_pb2.ListPoolsResponse(
            pools=[convert.pool_to(p) for p in pools], next_page_token=token
        )

    def ListAllocations(self, request: Any, context: Any) -> Any:
        allocations, token = self.pools.list_allocations(
            request.pool_id, request.page_size, request.page_token
        )
        return ipam_pb2.ListAllocationsResponse(
            allocations=[convert.allocation_to(a) for a in allocations], next_page_token=token
        )


class IdAllocatorServicer(ipam_pb2_grpc.IdAllocatorServicer):
    def __init__(self, ranges: IdRanges) -> None:
        self.ranges = ranges

    def CreateRange(self, request: Any, context: Any) -> Any:
        self.ranges.create_range(request.name, request.start, request.end)
        return ipam_pb2.CreateRangeResponse()

    def GetId(self, request: Any, context: Any) -> Any:
        id_ = self.ranges.get_id(
            request.name,
            id_=request.id if request.HasField("id") else None,
            lo=request.range_start if request.HasField("range_start") else None,
            hi=request.range_end if request.HasField("range_end") else None,
            owner=request.owner,
        )
        return ipam_pb2.GetIdResponse(id=id_)

    def ReleaseId(self, request: Any, context: Any) -> Any:
        self.ranges.release_id(request.name, request.id)
        return ipam_pb2.ReleaseIdResponse()

    def DeleteRange(self, request: Any, context: Any) -> Any:
        self.ranges.delete_range(request.name)
        return ipam_pb2.DeleteRangeResponse()
